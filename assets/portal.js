// The developer portal's one script, an enhancement only: every page works without it.
// A key shown once (on creation or rotation) is kept in this browser so that the reference
// pages' curl samples carry it; logging out forgets it. The server never keeps a key in clear.
(function () {
  var STORE = 'tollgate.portal.key';
  var PLACEHOLDER = 'YOUR_API_KEY';
  function get() { try { return localStorage.getItem(STORE); } catch (e) { return null; } }
  function set(v) { try { if (v) { localStorage.setItem(STORE, v); } else { localStorage.removeItem(STORE); } } catch (e) {} }

  var shown = document.querySelector('[data-new-key]');
  if (shown) {
    set(shown.getAttribute('data-new-key'));
    if (navigator.clipboard) {
      var copy = document.createElement('button');
      copy.type = 'button';
      copy.textContent = 'Copy';
      copy.addEventListener('click', function () {
        navigator.clipboard.writeText(shown.textContent).then(function () { copy.textContent = 'Copied'; });
      });
      shown.parentNode.appendChild(copy);
    }
  }
  var loggedIn = document.querySelector('form[action="/logout"]');
  var key = get();
  if (loggedIn && key) {
    document.querySelectorAll('pre.curl code').forEach(function (c) {
      c.textContent = c.textContent.split(PLACEHOLDER).join(key);
    });
  }
  if (loggedIn) {
    loggedIn.addEventListener('submit', function () { set(null); });
  }
})();
