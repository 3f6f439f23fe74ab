//! The fuzzing corpus (`fuzz/corpus/<target>/`) replayed on the ordinary toolchain:
//! every file through its target, then each one mutated a few hundred times (bit flips,
//! cuts, splices of another file, bytes repeated) with a fixed seed — no input may make
//! the code that reads outside data panic. The coverage-guided runs are cargo fuzz's
//! (`fuzz/`, RELIABILITY.md); this keeps what they found from coming back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;

use o365_essentials_core::fuzzing::TARGETS;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus of `{target}` ({}): {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\"",
    b"{",
    b"[",
    b"\n",
    b":: ",
    b"\0",
    b"\xff",
    b"-1",
    b"1e999",
    b"null",
    b"\xc0\x0c",
];

fn mutate(rng: &mut Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d.truncate(i);
            }
            2 => {
                let at = rng.below(d.len() + 1);
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                d.splice(at..at, other[from..to].iter().copied());
            }
            3 if !d.is_empty() => {
                let i = rng.below(d.len());
                let b = d[i];
                let n = rng.below(64);
                d.splice(i..i, std::iter::repeat_n(b, n));
            }
            4 => {
                let at = rng.below(d.len() + 1);
                let pick = INTERESTING[rng.below(INTERESTING.len())];
                d.splice(at..at, pick.iter().copied());
            }
            _ if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
    d
}

#[test]
fn every_corpus_file_and_its_mutations_read_without_a_panic() {
    let mut total = 0usize;
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(
            files.len() >= 3,
            "the corpus of `{target}` has {} files",
            files.len()
        );
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
        for (name, data) in &files {
            let r = std::panic::catch_unwind(|| run(data));
            assert!(r.is_ok(), "`{target}` panicked on the corpus file {name}");
            total += 1;
            for round in 0..300 {
                let other = &files[rng.below(files.len())].1;
                let m = mutate(&mut rng, data, other);
                let r = std::panic::catch_unwind(|| run(&m));
                assert!(
                    r.is_ok(),
                    "`{target}` panicked on mutation {round} of {name}: {:?}",
                    String::from_utf8_lossy(&m)
                );
                total += 1;
            }
        }
    }
    assert!(total > 10_000, "{total} inputs");
}
