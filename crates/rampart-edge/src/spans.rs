//! [`Spans`]: where each field of a parsed HTTP/1 head lies in the head's bytes.
//!
//! httparse hands out fields borrowed from the read buffer; the head is then split off
//! and frozen so that every value becomes a slice of it (no copy per field). The offsets
//! bridge the two. Most heads have a few dozen fields at most: those live on the stack
//! (a small array, so that setting it up costs next to nothing); more go to the heap.

/// Fields kept on the stack.
const STACK: usize = 24;

/// (name start, name end, value start, value end), offsets into the head.
pub type Span = (u32, u32, u32, u32);

/// The spans of one head's fields.
pub struct Spans {
    stack: [Span; STACK],
    heap: Vec<Span>,
    len: usize,
}

impl Spans {
    /// The spans of `fields`, which borrow from `base` (the head's bytes, at most
    /// `u32::MAX` long: heads are limited far below that).
    pub fn of(base: &[u8], fields: &[httparse::Header<'_>]) -> Self {
        let start = base.as_ptr() as usize;
        let at = |s: &[u8]| {
            let o = s.as_ptr() as usize - start;
            (o as u32, (o + s.len()) as u32)
        };
        let span = |h: &httparse::Header<'_>| {
            let (ns, ne) = at(h.name.as_bytes());
            let (vs, ve) = at(h.value);
            (ns, ne, vs, ve)
        };
        let mut spans = Spans {
            stack: [(0, 0, 0, 0); STACK],
            heap: Vec::new(),
            len: fields.len(),
        };
        if fields.len() <= STACK {
            for (s, h) in spans.stack.iter_mut().zip(fields) {
                *s = span(h);
            }
        } else {
            spans.heap = fields.iter().map(span).collect();
        }
        spans
    }

    /// The spans, in field order.
    pub fn as_slice(&self) -> &[Span] {
        if self.len <= STACK {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_names_and_values_on_the_stack_and_beyond() {
        for n in [0, 1, STACK, STACK + 1, 100] {
            let mut head = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                head.extend_from_slice(format!("x-f{i}: value {i}\r\n").as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            let mut fields = vec![httparse::EMPTY_HEADER; n + 1];
            let mut req = httparse::Request::new(&mut fields);
            assert!(req.parse(&head).unwrap().is_complete());
            let spans = Spans::of(&head, req.headers);
            assert_eq!(spans.as_slice().len(), n);
            for (i, &(ns, ne, vs, ve)) in spans.as_slice().iter().enumerate() {
                assert_eq!(
                    &head[ns as usize..ne as usize],
                    format!("x-f{i}").as_bytes()
                );
                assert_eq!(
                    &head[vs as usize..ve as usize],
                    format!("value {i}").as_bytes()
                );
            }
        }
    }
}
