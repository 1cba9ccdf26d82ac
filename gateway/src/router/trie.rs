//! A byte trie of path prefixes: one walk along the request path finds every route whose
//! prefix it starts with, however many routes there are.

#[derive(Default)]
struct Node {
    /// Children sorted by byte, searched linearly: path fan-out per byte is small.
    children: Vec<(u8, u32)>,
    /// `(candidate id, prefix length)` for prefixes that end here.
    ends: Vec<(u32, u32)>,
}

#[derive(Default)]
pub struct PrefixTrie {
    nodes: Vec<Node>,
}

impl PrefixTrie {
    pub fn insert(&mut self, prefix: &str, candidate: u32) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut at = 0usize;
        for &b in prefix.as_bytes() {
            at = match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.nodes[at].children[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len() as u32;
                    self.nodes.push(Node::default());
                    self.nodes[at].children.insert(i, (b, next));
                    next as usize
                }
            };
        }
        self.nodes[at].ends.push((candidate, prefix.len() as u32));
    }

    /// Calls `found(candidate, prefix_len)` for every stored prefix of `path`.
    pub fn for_each_prefix(&self, path: &str, mut found: impl FnMut(u32, u32)) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        for &(c, len) in &node.ends {
            found(c, len);
        }
        for &b in path.as_bytes() {
            let next = node.children.iter().find(|c| c.0 == b);
            let Some(&(_, i)) = next else { return };
            node = &self.nodes[i as usize];
            for &(c, len) in &node.ends {
                found(c, len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_prefix_and_only_prefixes() {
        let mut t = PrefixTrie::default();
        t.insert("/api/", 1);
        t.insert("/api/get/", 2);
        t.insert("/apix", 3);
        t.insert("/", 4);
        let mut seen = vec![];
        t.for_each_prefix("/api/get/context", |c, l| seen.push((c, l)));
        assert_eq!(seen, vec![(4, 1), (1, 5), (2, 9)]);
    }
}
