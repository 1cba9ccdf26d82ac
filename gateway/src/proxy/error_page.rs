//! Gateway-written answers in the format the client asks for, as Kong does: JSON by default,
//! HTML or plain text when the `Accept` header prefers them (the highest `q` wins, the first
//! on a tie).
use http::{header, HeaderMap, HeaderValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    Text,
    /// A gRPC call's: no body, the message in `grpc-message` (see `grpc::trailers_only`).
    Grpc,
}

impl Format {
    pub fn from_accept(headers: &HeaderMap) -> Format {
        let mut best = (Format::Json, 0.0f32);
        for value in headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for item in value.split(',') {
                let mut parts = item.split(';').map(str::trim);
                let format = match parts.next().unwrap_or("").to_ascii_lowercase().as_str() {
                    "application/json" => Format::Json,
                    "text/html" => Format::Html,
                    "text/plain" => Format::Text,
                    _ => continue,
                };
                let q = parts
                    .find_map(|p| p.strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                if q > best.1 {
                    best = (format, q);
                }
            }
        }
        best.0
    }

    /// The body and its content type for `message`.
    pub fn render(self, message: &str, request_id: &str) -> (String, HeaderValue) {
        match self {
            Format::Json => (
                serde_json::json!({ "message": message, "request_id": request_id }).to_string(),
                HeaderValue::from_static("application/json; charset=utf-8"),
            ),
            Format::Text => (
                format!("{message}\nrequest_id: {request_id}\n"),
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            Format::Grpc => (String::new(), HeaderValue::from_static("application/grpc")),
            Format::Html => (
                format!(
                    "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>{}.</p>\n    <p>request_id: {}</p>\n  </body>\n</html>\n",
                    escape(message),
                    escape(request_id)
                ),
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Format {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        Format::from_accept(&h)
    }

    #[test]
    fn the_preferred_known_type_wins() {
        assert_eq!(Format::from_accept(&HeaderMap::new()), Format::Json);
        assert_eq!(
            accept("text/html,application/xhtml+xml,*/*;q=0.8"),
            Format::Html
        );
        assert_eq!(accept("text/plain;q=0.5, text/html;q=0.9"), Format::Html);
        assert_eq!(accept("text/plain, application/json"), Format::Text);
        assert_eq!(accept("image/png"), Format::Json);
    }

    #[test]
    fn html_is_escaped() {
        let (body, ty) = Format::Html.render("<script>x</script>", "r1");
        assert!(body.contains("&lt;script&gt;") && !body.contains("<script>"));
        assert_eq!(ty, "text/html; charset=utf-8");
        assert_eq!(
            Format::Text.render("No API key found in request", "r1").0,
            "No API key found in request\nrequest_id: r1\n"
        );
    }
}
