//! The "something to look at" page: every live robot's top-down view, refreshed several
//! times a second, with a status line per robot.
//!
//! The page is static HTML that any HTTP server can serve; it needs two kinds of endpoint,
//! whose paths the server chooses:
//!
//! - a **feed** (`feed_path`, JSON, see [`feed_json`]):
//!   `{"robots":[{"robot_id","status_line","frame_url"}…]}`, polled every
//!   [`PageOptions::refresh_ms`]; robots appear and disappear with it;
//! - one **frame** URL per robot (`frame_url` from the feed): a JPEG of its `topdown` camera
//!   (see [`SharedSimRobot::frame`]), reloaded at the same rate, the next request only
//!   once the previous image has arrived, so a slow link drops frames instead of queueing them.

use serde_json::json;

use super::robot::SimError;
use super::shared::SharedSimRobot;
use crate::runtime::models::RuntimeState;

/// How the page polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageOptions {
    /// The page title.
    pub title: String,
    /// Where the feed JSON is served, e.g. `/sim/robots.json`.
    pub feed_path: String,
    /// Milliseconds between refreshes (≤ 200 gives 5 fps or more).
    pub refresh_ms: u32,
}

impl Default for PageOptions {
    /// Title "Menlo simulated robots", feed at `/sim/robots.json`, 150 ms (≈ 6.7 fps).
    fn default() -> Self {
        PageOptions {
            title: "Menlo simulated robots".to_owned(),
            feed_path: "/sim/robots.json".to_owned(),
            refresh_ms: 150,
        }
    }
}

/// One robot in the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEntry {
    /// The robot's id (a stable key for the page).
    pub robot_id: String,
    /// One line of text under its view (see [`status_line`]).
    pub status_line: String,
    /// Where its `topdown` JPEG is served.
    pub frame_url: String,
}

/// The feed document the page polls.
pub fn feed_json(entries: &[FeedEntry]) -> String {
    let robots: Vec<_> = entries
        .iter()
        .map(|e| json!({"robot_id": e.robot_id, "status_line": e.status_line, "frame_url": e.frame_url}))
        .collect();
    json!({ "robots": robots }).to_string()
}

/// A one-line summary: status, pose, held objects, the running action with its progress,
/// or the last action's outcome.
pub fn status_line(state: &RuntimeState) -> String {
    let robot = &state.robot;
    let mut parts = vec![format!("{} {}", robot.entity_id, robot.status.as_str())];
    if let Some(pose) = &robot.pose {
        parts.push(format!(
            "at ({:.2}, {:.2}) {:.0}°",
            pose.position[0],
            pose.position[1],
            pose.yaw_deg.unwrap_or(0.0)
        ));
    }
    if let Some(held) = robot.held_entity_ids.as_ref().filter(|h| !h.is_empty()) {
        parts.push(format!("holding {}", held.join(", ")));
    }
    if let Some(active) = &state.runtime.active_action {
        let progress = active.progress.as_ref().and_then(|p| {
            let (current, total) = (p.current?, p.total?);
            (total > 0.0).then(|| format!(" {:.0}%", 100.0 * current / total))
        });
        parts.push(format!("{}{}", active.name, progress.unwrap_or_default()));
    } else if let Some(last) = &state.runtime.last_action {
        let error = last
            .error
            .as_ref()
            .map(|e| format!(" {}", e.code))
            .unwrap_or_default();
        parts.push(format!("last: {} {}{}", last.name, last.status.as_str(), error));
    }
    parts.join(" · ")
}

impl SharedSimRobot {
    /// The status line of the robot now (see [`status_line`]).
    pub fn status_line(&self) -> String {
        let now = self.now();
        let state = self.with_robot(|robot| robot.runtime_state(now));
        status_line(&state)
    }

    /// A JPEG of camera `camera_id` now. The world is copied under the lock and rendered
    /// outside it, so a frame never holds up a running action; `topdown` frames reuse the
    /// static background of the last size asked for.
    pub fn frame(&self, camera_id: &str, width: u32, height: u32, quality: f64) -> Result<Vec<u8>, SimError> {
        let world = self.with_robot(|robot| robot.world().clone());
        let image = if camera_id == "topdown" {
            let background = self.topdown_background(&world, width, height)?;
            super::camera::render_topdown_over(&world, background)
        } else {
            super::camera::render(&world, camera_id, width, height)?
        };
        super::camera::encode_jpeg(&image, quality)
    }
}

/// The page (self-contained HTML: no external scripts, styles or fonts).
pub fn page_html(options: &PageOptions) -> String {
    let refresh = options.refresh_ms.max(20);
    PAGE_TEMPLATE
        .replace("{{TITLE}}", &escape_html(&options.title))
        .replace(
            "{{FEED}}",
            &serde_json::Value::from(options.feed_path.as_str()).to_string(),
        )
        .replace("{{REFRESH_MS}}", &refresh.to_string())
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PAGE_TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{TITLE}}</title>
<style>
  body { margin: 0; background: #1e2228; color: #e8e6e1; font: 14px system-ui, sans-serif; }
  header { padding: 12px 16px; font-size: 18px; display: flex; gap: 16px; align-items: baseline; }
  header small { color: #9aa0a8; font-size: 13px; }
  main { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; padding: 0 16px 16px; }
  figure { margin: 0; background: #2a2f37; border-radius: 6px; overflow: hidden; }
  figure img { display: block; width: 100%; aspect-ratio: 4 / 3; object-fit: contain; background: #282c34; }
  figcaption { padding: 6px 10px; font-family: ui-monospace, monospace; font-size: 12px; }
  figcaption b { color: #fff; }
  .empty { padding: 24px 16px; color: #9aa0a8; }
</style>
</head>
<body>
<header>{{TITLE}} <small id="summary">connecting…</small></header>
<main id="robots"></main>
<p class="empty" id="empty" hidden>No live robots.</p>
<script>
"use strict";
const FEED = {{FEED}};
const REFRESH_MS = {{REFRESH_MS}};
const tiles = new Map();

function tile(robot) {
  let t = tiles.get(robot.robot_id);
  if (t) return t;
  const figure = document.createElement("figure");
  const img = document.createElement("img");
  img.alt = "top-down view of " + robot.robot_id;
  const caption = document.createElement("figcaption");
  figure.append(img, caption);
  document.getElementById("robots").append(figure);
  t = { figure, img, caption, loading: false, url: "" };
  img.addEventListener("load", () => { t.loading = false; });
  img.addEventListener("error", () => { t.loading = false; });
  tiles.set(robot.robot_id, t);
  return t;
}

function refreshFrame(t) {
  if (t.loading || !t.url) return;
  t.loading = true;
  t.img.src = t.url + (t.url.includes("?") ? "&" : "?") + "t=" + Date.now();
}

async function poll() {
  try {
    const response = await fetch(FEED, { cache: "no-store" });
    const feed = await response.json();
    const seen = new Set();
    for (const robot of feed.robots || []) {
      seen.add(robot.robot_id);
      const t = tile(robot);
      t.url = robot.frame_url;
      t.caption.innerHTML = "";
      const id = document.createElement("b");
      id.textContent = robot.robot_id + " ";
      t.caption.append(id, document.createTextNode(robot.status_line));
      refreshFrame(t);
    }
    for (const [id, t] of tiles) {
      if (!seen.has(id)) { t.figure.remove(); tiles.delete(id); }
    }
    document.getElementById("empty").hidden = tiles.size > 0;
    document.getElementById("summary").textContent = tiles.size + " live robot(s)";
  } catch (e) {
    document.getElementById("summary").textContent = "feed unavailable, retrying";
  }
  setTimeout(poll, REFRESH_MS);
}
poll();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::sim::{SimConfig, SimRobot};
    use std::time::Duration;

    #[test]
    fn the_page_polls_the_feed_at_five_fps_or_more_and_is_self_contained() {
        let html = page_html(&PageOptions::default());
        assert!(html.contains(r#"const FEED = "/sim/robots.json";"#));
        assert!(html.contains("const REFRESH_MS = 150;"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resources"
        );
        assert!(!html.contains("{{"), "every placeholder is filled");
        let odd = page_html(&PageOptions {
            title: "<b>&".into(),
            feed_path: "/a\"b".into(),
            refresh_ms: 0,
        });
        assert!(odd.contains("&lt;b&gt;&amp;") && odd.contains(r#"const FEED = "/a\"b";"#));
        assert!(odd.contains("const REFRESH_MS = 20;"));
    }

    #[test]
    fn feed_and_status_lines() {
        let feed = feed_json(&[FeedEntry {
            robot_id: "rb_1".into(),
            status_line: "robot_1 ready".into(),
            frame_url: "/sim/rb_1/topdown.jpg".into(),
        }]);
        let value: serde_json::Value = serde_json::from_str(&feed).unwrap();
        assert_eq!(value["robots"][0]["frame_url"], "/sim/rb_1/topdown.jpg");

        let t0 = Duration::from_secs(1_000);
        let robot = SimRobot::new(&SimConfig::default(), t0).unwrap();
        let clock = std::sync::Arc::new(move || t0 + Duration::from_secs(1));
        let sim = SharedSimRobot::with_clock(robot, clock);
        assert_eq!(sim.status_line(), "robot_1 ready · at (1.50, 4.00) 0°");
        let go = r#"{"name":"go_to","input":{"target":{"kind":"entity","entity_id":"pad_B"}},"options":{"action_id":"a"}}"#;
        sim.with_robot(|r| r.handle("runtime.tools_call", go, t0))
            .unwrap();
        let line = sim.status_line();
        assert!(
            line.starts_with("robot_1 moving · at (") && line.ends_with("%"),
            "{line}"
        );
        let stop = r#"{"name":"stop","input":{},"options":{"action_id":"b"}}"#;
        sim.with_robot(|r| r.handle("runtime.tools_call", stop, t0))
            .unwrap();
        assert!(
            sim.status_line().ends_with("last: stop done"),
            "{}",
            sim.status_line()
        );

        let jpeg = sim.frame("topdown", 320, 240, 0.6).unwrap();
        assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF]);
        // The cached background gives the same picture as a fresh render.
        let world = sim.with_robot(|r| r.world().clone());
        let fresh = crate::dev::sim::render(&world, "topdown", 320, 240).unwrap();
        let cached = crate::dev::sim::encode_jpeg(&fresh, 0.6).unwrap();
        assert_eq!(sim.frame("topdown", 320, 240, 0.6).unwrap(), cached);
        assert_ne!(
            sim.frame("topdown", 200, 100, 0.6).unwrap(),
            cached,
            "a new size, a new background"
        );
        assert_eq!(sim.frame("x", 320, 240, 0.6).unwrap_err().code, "UNKNOWN_CAMERA");
    }
}
