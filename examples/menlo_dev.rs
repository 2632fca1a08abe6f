//! Runs the embedded platform on its own, for other programs, other SDKs and official LiveKit
//! clients: prints the environment to point them at it, then serves until Ctrl-C.
//!
//! ```text
//! cargo run --example menlo_dev --features dev
//! ```

use menlo_robot_sdk::dev::Platform;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let platform = Platform::start()?;
    println!("# the embedded Menlo platform is running; in another shell:");
    println!(
        "export MENLO_RCS_URL={} MENLO_API_KEY={}",
        platform.rcs_url(),
        platform.api_key()
    );
    println!(
        "# LiveKit (for official LiveKit clients): {}",
        platform.livekit_url()
    );
    println!(
        "export LIVEKIT_URL={} LIVEKIT_API_KEY={} LIVEKIT_API_SECRET={}",
        platform.livekit_url(),
        platform.livekit().api_key,
        platform.livekit().api_secret
    );
    println!("# live robots: {}", platform.page_url());
    println!("# Ctrl-C stops it.");
    loop {
        std::thread::park();
    }
}
