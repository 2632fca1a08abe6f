//! Benchmark: `robots().get()` through the SDK side by side with a bare ureq request to the
//! same endpoint of the embedded emulator, in one run. Prints figures; asserts nothing.
//!
//! ```text
//! cargo run --release --example bench_control_plane --features dev
//! ```

use std::time::{Duration, Instant};

use menlo_robot_sdk::dev::{ControlPlane, Principal};
use menlo_robot_sdk::{Client, NewRobot};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let per_round = 100;
    let platform = ControlPlane::start()?;
    let key = platform.create_api_key(&Principal::new("bench", "org_bench", "team_bench"));
    let client = Client::builder()
        .rcs_url(platform.url())
        .api_key(key.clone())
        .build()?;
    let robot_id = client
        .robots()
        .create(&NewRobot::new("bench", "asimov-v0"))?
        .robot
        .id;

    let url = format!("{}/v1/robots/{robot_id}", platform.url());
    let agent =
        ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
    let bare = || -> Result<usize, Box<dyn std::error::Error>> {
        let mut response = agent
            .get(&url)
            .header("authorization", format!("Bearer {key}"))
            .header("accept", "application/json")
            .call()?;
        Ok(response.body_mut().read_to_vec()?.len())
    };
    let sdk =
        || -> Result<usize, Box<dyn std::error::Error>> { Ok(client.robots().get(&robot_id)?.id.len()) };

    for _ in 0..200 {
        bare()?;
        sdk()?;
    }
    // Alternate short blocks so drift on a shared machine hits both sides alike.
    let (mut bare_samples, mut sdk_samples) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for use_sdk in order {
            for _ in 0..per_round {
                let start = Instant::now();
                if use_sdk {
                    sdk()?;
                    sdk_samples.push(start.elapsed());
                } else {
                    bare()?;
                    bare_samples.push(start.elapsed());
                }
            }
        }
    }
    platform.clear_requests();
    let (bare_p50, sdk_p50) = (
        percentile(&mut bare_samples, 50.0),
        percentile(&mut sdk_samples, 50.0),
    );
    let (bare_p99, sdk_p99) = (
        percentile(&mut bare_samples, 99.0),
        percentile(&mut sdk_samples, 99.0),
    );
    let (bare_mean, sdk_mean) = (mean(&bare_samples), mean(&sdk_samples));
    println!(
        "robots().get() vs bare ureq GET, {} requests each, same emulator, one run",
        sdk_samples.len()
    );
    println!(
        "  bare ureq : p50 {:>8.1} µs  p99 {:>8.1} µs  mean {:>8.1} µs",
        us(bare_p50),
        us(bare_p99),
        us(bare_mean)
    );
    println!(
        "  sdk       : p50 {:>8.1} µs  p99 {:>8.1} µs  mean {:>8.1} µs",
        us(sdk_p50),
        us(sdk_p99),
        us(sdk_mean)
    );
    println!(
        "  ratio sdk/bare: p50 {:.3}  mean {:.3}  (target ≤ 1.10)",
        us(sdk_p50) / us(bare_p50),
        us(sdk_mean) / us(bare_mean)
    );
    Ok(())
}

fn percentile(samples: &mut [Duration], pct: f64) -> Duration {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * pct / 100.0).round() as usize;
    samples[index]
}

fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / samples.len() as u32
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
