//! A small deterministic generator (xorshift) for the unit tests' generated inputs, so
//! that a failure reproduces from its seed.

pub(crate) struct Xorshift(pub(crate) u64);

impl Xorshift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A value of fewer than `max_len` bytes from `alphabet`.
    pub(crate) fn value(&mut self, alphabet: &[u8], max_len: u64) -> Vec<u8> {
        let len = (self.next() % max_len) as usize;
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
            .collect()
    }
}
