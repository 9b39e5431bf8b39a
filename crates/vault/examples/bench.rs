//! Rough cost of sealing and opening a 64-byte secret: `cargo run --release --example bench`.
//! Prints the median of 5 runs of 100k operations each, in µs per operation.

use std::hint::black_box;
use std::time::Instant;

use gig_vault::{Aad, MasterKey, Vault};

const ITERATIONS: u32 = 100_000;
const RUNS: usize = 5;

fn median_us_per_op(mut op: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                op();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(ITERATIONS)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn main() {
    let vault = Vault::new(&MasterKey::generate());
    let aad = Aad {
        secret_id: "sec_0123456789",
        owner: "team-a",
        name: "API_TOKEN",
    };
    let secret = [0x5a_u8; 64];
    let sealed = vault.seal(&aad, &secret);

    let seal = median_us_per_op(|| {
        black_box(vault.seal(black_box(&aad), black_box(&secret)));
    });
    let open = median_us_per_op(|| {
        black_box(
            vault
                .open(black_box(&aad), black_box(&sealed))
                .expect("opens"),
        );
    });
    println!("seal 64 B: {seal:.2} µs/op (median of {RUNS} x {ITERATIONS})");
    println!("open 64 B: {open:.2} µs/op (median of {RUNS} x {ITERATIONS})");
}
