//! The control plane alone (default features: no live layer): create a robot, start its
//! session, mint a room key, list robots, clean up.
//!
//! With `MENLO_API_KEY` set it talks to the real platform (`MENLO_RCS_URL`, default
//! `https://api.menlo.ai/rcs`). Without it, it needs feature `dev` and starts the embedded
//! control-plane emulator:
//!
//! ```text
//! cargo run --example control_plane --features dev
//! ```
//!
//! Built with default features, it is also the SDK's size figure (`.ci/bench.sh`).

use menlo_robot_sdk::{Client, NewRobot, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keeps the embedded platform alive for the whole run when no API key is set.
    let (client, _platform) = client()?;

    let created = client.robots().create(&NewRobot::new("My bot", "asimov-v0"))?;
    let robot_id = created.robot.id.clone();
    println!("created robot {robot_id} ({})", created.robot.model);
    if created.pin_code.is_some() {
        println!("  the platform returned its show-once PIN: store it securely");
    }

    // SimpleSim: dispatch no worker; the browser viewer tab is the runtime.
    let session = client
        .robots()
        .create_session(&robot_id, &SessionOptions::new().no_workers())?;
    println!("session in room {} on {}", session.room_name, session.livekit_url);

    let link = client.room_keys().link(&robot_id, &Default::default())?;
    println!(
        "viewer link minted ({} chars): open it in Chrome, one tab per robot",
        link.len()
    );

    for robot in client.robots().iter(50) {
        let robot = robot?;
        println!(
            "  robot {} {:?} updated {}",
            robot.id, robot.name, robot.updated_at
        );
    }

    client.robots().delete_session(&robot_id)?;
    client.robots().delete(&robot_id)?;
    println!("cleaned up {robot_id}");
    Ok(())
}

#[cfg(feature = "dev")]
type Platform = Option<menlo_robot_sdk::dev::ControlPlane>;
#[cfg(not(feature = "dev"))]
type Platform = Option<()>;

fn client() -> Result<(Client, Platform), Box<dyn std::error::Error>> {
    let has_key = std::env::var("MENLO_API_KEY").is_ok_and(|key| !key.trim().is_empty());
    if has_key {
        return Ok((Client::from_env()?, None));
    }
    embedded()
}

#[cfg(feature = "dev")]
fn embedded() -> Result<(Client, Platform), Box<dyn std::error::Error>> {
    use menlo_robot_sdk::dev::{ControlPlane, Principal};
    let platform = ControlPlane::start()?;
    let key = platform.create_api_key(&Principal::new("quickstart", "org_local", "team_local"));
    println!(
        "no MENLO_API_KEY: using the embedded platform at {}",
        platform.url()
    );
    let client = Client::builder().rcs_url(platform.url()).api_key(key).build()?;
    Ok((client, Some(platform)))
}

#[cfg(not(feature = "dev"))]
fn embedded() -> Result<(Client, Platform), Box<dyn std::error::Error>> {
    Err("MENLO_API_KEY is not set; set it, or run with --features dev for the embedded platform".into())
}
