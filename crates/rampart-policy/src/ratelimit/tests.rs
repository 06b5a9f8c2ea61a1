use super::*;

fn counting(algorithm: Algorithm, window_ms: u64, thresholds: &[u32], hold_ms: &[u64]) -> Counting {
    Counting {
        algorithm,
        window_ms,
        thresholds: thresholds.to_vec(),
        hold_ms: hold_ms.to_vec(),
        distinct: false,
    }
}

fn levels(
    store: &LocalStore,
    key: &[u8],
    times: impl IntoIterator<Item = u64>,
) -> Vec<Option<usize>> {
    times
        .into_iter()
        .map(|t| store.hit(key, b"", t).level)
        .collect()
}

#[test]
fn sliding_window_counts_and_weights_the_previous_window() {
    let store = LocalStore::new(counting(Algorithm::SlidingWindow, 1000, &[10], &[0]), 1000);
    // Ten hits are within the limit, the eleventh exceeds it.
    let got = levels(&store, b"k", 0..11);
    assert_eq!(got[..10], [None; 10]);
    assert_eq!(got[10], Some(0));
    // Half-way through the next window the previous one (11 hits) weighs 0.5: 5.5 + 1.
    let o = store.hit(b"k", b"", 1500);
    assert!((o.count - 6.5).abs() < 1e-9, "{o:?}");
    assert_eq!(o.level, None);
    // Another key has its own count.
    assert_eq!(store.hit(b"other", b"", 1500).count, 1.0);
    // A gap of more than a window forgets everything.
    assert_eq!(store.hit(b"k", b"", 5000).count, 1.0);
}

#[test]
fn steady_rates_below_and_above_a_sliding_limit() {
    // 100 per second; 90/s never exceeds it, 110/s does within about a second.
    for (rate, over) in [(90u64, false), (110, true)] {
        let store = LocalStore::new(counting(Algorithm::SlidingWindow, 1000, &[100], &[0]), 1000);
        let mut first_over = None;
        for i in 0..rate * 10 {
            let t = i * 1000 / rate;
            if store.hit(b"k", b"", t).level.is_some() && first_over.is_none() {
                first_over = Some(t);
            }
        }
        assert_eq!(first_over.is_some(), over, "rate {rate}: {first_over:?}");
        if let Some(t) = first_over {
            assert!(
                (900..=2000).contains(&t),
                "rate {rate} first over at {t} ms"
            );
        }
    }
}

#[test]
fn graduated_levels_and_holds() {
    // Over 5: log; over 10: block for 60 s.
    let store = LocalStore::new(
        counting(Algorithm::SlidingWindow, 10_000, &[5, 10], &[0, 60_000]),
        1000,
    );
    let got = levels(&store, b"k", 0..12);
    assert_eq!(got[..5], [None; 5]);
    assert_eq!(got[5..10], [Some(0); 5]);
    assert_eq!(got[10..], [Some(1); 2]);
    // 30 s later one request is still held at level 1, until 10 + 60 s.
    let o = store.hit(b"k", b"", 30_000);
    assert_eq!((o.level, o.held_for), (Some(1), Some(30_010)));
    // The hold is not extended by the requests it refuses.
    let o = store.hit(b"k", b"", 60_009);
    assert_eq!((o.level, o.held_for), (Some(1), Some(1)));
    let o = store.hit(b"k", b"", 60_011);
    assert_eq!((o.level, o.held_for), (None, None));
}

#[test]
fn gcra_allows_a_burst_then_the_rate() {
    // 5 per second: five at once conform, the sixth does not; one more every 200 ms.
    let store = LocalStore::new(counting(Algorithm::Gcra, 1000, &[5], &[0]), 1000);
    let got = levels(&store, b"k", [0, 0, 0, 0, 0, 0]);
    assert_eq!(got, [None, None, None, None, None, Some(0)]);
    assert_eq!(levels(&store, b"k", [100]), [Some(0)]);
    assert_eq!(levels(&store, b"k", [200, 200]), [None, Some(0)]);
    // A client sending 10/s for 10 s gets 5/s through (plus the burst).
    let store = LocalStore::new(counting(Algorithm::Gcra, 1000, &[5], &[0]), 1000);
    let through = (0..100u64)
        .filter(|i| store.hit(b"k", b"", i * 100).level.is_none())
        .count();
    assert!((50..=56).contains(&through), "{through}");
}

#[test]
fn gcra_with_two_levels() {
    let store = LocalStore::new(counting(Algorithm::Gcra, 1000, &[2, 4], &[0, 0]), 1000);
    let got = levels(&store, b"k", [0, 0, 0, 0, 0]);
    assert_eq!(got, [None, None, Some(0), Some(0), Some(1)]);
}

#[test]
fn distinct_values_per_key() {
    let mut c = counting(Algorithm::SlidingWindow, 600_000, &[3], &[0]);
    c.distinct = true;
    let store = LocalStore::new(c, 1000);
    let mut got = Vec::new();
    for user in ["alice", "bob", "alice", "carol", "bob", "dave", "erin"] {
        got.push(store.hit(b"198.51.100.0/24", user.as_bytes(), 1000).level);
    }
    assert_eq!(got, [None, None, None, None, None, Some(0), Some(0)]);
    // Another prefix counts its own users.
    assert_eq!(store.hit(b"203.0.113.0/24", b"alice", 1000).level, None);
}

#[test]
fn memory_is_bounded_and_hot_keys_survive() {
    let store = LocalStore::new(
        counting(Algorithm::SlidingWindow, 1000, &[1_000_000], &[0]),
        64 * 16,
    );
    for i in 0..20_000u32 {
        store.hit(&i.to_le_bytes(), b"", 0);
        // The hot key is used between every new key.
        store.hit(b"hot", b"", 0);
    }
    assert!(store.len() <= 64 * 16, "{}", store.len());
    assert!(store.evictions() >= 20_000 - 64 * 16);
    assert_eq!(store.hit(b"hot", b"", 0).count, 20_001.0);
}

#[test]
fn threads_count_one_key_together() {
    let store = std::sync::Arc::new(LocalStore::new(
        counting(Algorithm::SlidingWindow, 1000, &[1_000_000], &[0]),
        1000,
    ));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let s = store.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    s.hit(b"k", b"", 10);
                }
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().is_ok());
    }
    assert_eq!(store.hit(b"k", b"", 10).count, 20_001.0);
}

/// The open-addressed table against a model: after every insertion and eviction, every
/// key the model holds is found, no other key is, and the counts agree.
#[test]
fn table_keeps_every_key_findable_through_growth_and_eviction() {
    let mut t = Table {
        slots: vec![Slot::default(); 16],
        len: 0,
        cap: 300,
        hand: 0,
        evictions: 0,
    };
    let mut model = std::collections::HashSet::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for step in 0..8_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Few distinct low bits: long probe runs and wrap-arounds.
        let key = (x % 2000).max(1) * 0x1_0000 + (x % 7);
        let (i, fresh) = t.slot(key);
        assert_eq!(t.slots[i].key, key);
        assert_eq!(fresh, !model.contains(&key), "step {step}");
        if fresh && model.len() == 300 {
            // One key was evicted: find which.
            let gone: Vec<u64> = model
                .iter()
                .copied()
                .filter(|k| t.find(*k).is_err())
                .collect();
            assert_eq!(gone.len(), 1, "step {step}");
            model.remove(&gone[0]);
        }
        model.insert(key);
        t.slots[i].state.used = step % 3 == 0;
        assert_eq!(t.len, model.len(), "step {step}");
        if step % 500 == 0 {
            for k in &model {
                assert!(t.find(*k).is_ok(), "step {step}: key {k} lost");
            }
            let held = t.slots.iter().filter(|s| s.key != 0).count();
            assert_eq!(held, model.len());
            assert!(
                t.slots.len() <= 1024,
                "grows to at most twice the cap (rounded up)"
            );
        }
    }
    assert!(t.evictions > 0);
}
