//! Writes prime pairs, one encoded pair per line, for test fixtures and for importing into a
//! party's pool from a faster machine: `generate_primes OUT COUNT`.
//!
//! Primes in a file that others can read are not secret: use such a file for tests only, or
//! import it into exactly one party and delete it.

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().ok_or("usage: generate_primes OUT COUNT")?;
    let count: usize = args
        .next()
        .ok_or("usage: generate_primes OUT COUNT")?
        .parse()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = std::sync::mpsc::channel();
    let workers: Vec<_> = (0..threads)
        .map(|w| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in (w..count).step_by(threads) {
                    let _ = tx.send(mpc_tss::PrimePair::generate());
                }
            })
        })
        .collect();
    drop(tx);
    let mut file = std::fs::File::create(&out)?;
    for (done, pair) in rx.into_iter().enumerate() {
        file.write_all(&pair.to_bytes()?)?;
        file.write_all(b"\n")?;
        eprintln!("{}/{count} prime pairs", done + 1);
    }
    for w in workers {
        w.join().map_err(|_| "a generator thread panicked")?;
    }
    Ok(())
}
