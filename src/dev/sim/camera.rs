//! Cameras: `pov`, a first-person raycast view from the robot, and `topdown`, the map with
//! the robot, pads, obstacles, objects and the current path. Frames are RGB, encoded as
//! baseline JPEG.

use serde_json::{Map, Value};
use tiny_skia::{Color, FillRule, LineCap, Paint, PathBuilder, Pixmap, Rect, Stroke, Transform};

use super::robot::SimError;
use super::scene::{parse_color, Shape};
use super::world::World;
use crate::runtime::calls::CAMERA_CAPTURE_TOPIC;

/// The cameras the simulator has.
pub const CAMERAS: [&str; 2] = ["pov", "topdown"];

/// Largest frame side, pixels.
pub const MAX_SIDE: u32 = 4096;

/// Defaults of a capture request (CONTRACT §8).
const DEFAULT_WIDTH: u32 = 1280;
const DEFAULT_HEIGHT: u32 = 720;
const DEFAULT_QUALITY: f64 = 0.7;

/// The `pov` camera: height above the floor (m), horizontal field of view (degrees).
const POV_HEIGHT_M: f64 = 0.5;
const POV_FOV_DEG: f64 = 90.0;
/// Obstacles and the floor's edge walls are this tall, metres.
const WALL_HEIGHT_M: f64 = 1.0;

const OBSTACLE_COLOR: [u8; 3] = [96, 104, 116];
const BOUNDARY_COLOR: [u8; 3] = [176, 168, 150];
const PAD_COLORS: [[u8; 3]; 5] = [
    [46, 134, 222],
    [39, 174, 96],
    [230, 126, 34],
    [142, 68, 173],
    [22, 160, 133],
];

/// An RGB image, rows top to bottom, 3 bytes a pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// `width × height × 3` bytes.
    pub pixels: Vec<u8>,
}

/// A validated `runtime.cameras_capture` request.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureRequest {
    /// The camera.
    pub camera_id: String,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// JPEG quality in (0, 1].
    pub quality: f64,
    /// The request id (`stream.id`).
    pub request_id: String,
    /// The byte-stream topic.
    pub topic: String,
}

fn invalid(message: impl Into<String>) -> SimError {
    SimError::new("INVALID_INPUT", message)
}

impl CaptureRequest {
    /// Reads `{"selector":{"kind":"id","id"},"options":{"width","height","quality"},
    /// "stream":{"id","topic"}}` (options default to 1280×720 at 0.7).
    pub fn parse(request: &Map<String, Value>) -> Result<CaptureRequest, SimError> {
        let selector = request
            .get("selector")
            .ok_or_else(|| invalid("selector: is required"))?;
        if selector.get("kind").and_then(Value::as_str) != Some("id") {
            return Err(invalid("selector.kind: must be \"id\""));
        }
        let camera_id = selector
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| invalid("selector.id: must be a non-empty string"))?
            .to_owned();
        if !CAMERAS.contains(&camera_id.as_str()) {
            return Err(SimError::new(
                "UNKNOWN_CAMERA",
                format!(
                    "selector.id: no camera {camera_id:?} (cameras: {})",
                    CAMERAS.join(", ")
                ),
            ));
        }
        let options = request.get("options").cloned().unwrap_or(Value::Null);
        let side = |field: &str, default: u32| match options.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(value) => value
                .as_u64()
                .filter(|v| (1..=u64::from(MAX_SIDE)).contains(v))
                .map(|v| v as u32)
                .ok_or_else(|| invalid(format!("options.{field}: must be an integer in 1..={MAX_SIDE}"))),
        };
        let width = side("width", DEFAULT_WIDTH)?;
        let height = side("height", DEFAULT_HEIGHT)?;
        let quality = match options.get("quality") {
            None | Some(Value::Null) => DEFAULT_QUALITY,
            Some(value) => value
                .as_f64()
                .filter(|q| *q > 0.0 && *q <= 1.0)
                .ok_or_else(|| invalid("options.quality: must be a number in (0, 1]"))?,
        };
        let stream = request.get("stream").cloned().unwrap_or(Value::Null);
        let request_id = stream
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| invalid("stream.id: must be a non-empty string"))?
            .to_owned();
        let topic = stream
            .get("topic")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .unwrap_or(CAMERA_CAPTURE_TOPIC)
            .to_owned();
        Ok(CaptureRequest {
            camera_id,
            width,
            height,
            quality,
            request_id,
            topic,
        })
    }
}

/// Renders camera `camera_id` of `world` at `width × height`.
pub fn render(world: &World, camera_id: &str, width: u32, height: u32) -> Result<RgbImage, SimError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(invalid(format!("the frame must be 1..={MAX_SIDE} pixels a side")));
    }
    match camera_id {
        "pov" => Ok(render_pov(world, width, height)),
        "topdown" => render_topdown(world, width, height),
        other => Err(SimError::new(
            "UNKNOWN_CAMERA",
            format!("no camera {other:?} (cameras: {})", CAMERAS.join(", ")),
        )),
    }
}

/// Encodes `image` as a baseline JPEG; `quality` in (0, 1].
pub fn encode_jpeg(image: &RgbImage, quality: f64) -> Result<Vec<u8>, SimError> {
    let failed = |what: String| SimError::new("CAPTURE_FAILED", what);
    let width = u16::try_from(image.width).map_err(|_| failed("frame too wide".into()))?;
    let height = u16::try_from(image.height).map_err(|_| failed("frame too tall".into()))?;
    let quality = (quality * 100.0).round().clamp(1.0, 100.0) as u8;
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(&image.pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| failed(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

fn pad_color(world: &World, index: usize) -> [u8; 3] {
    world.scene().pads[index]
        .color
        .as_deref()
        .and_then(parse_color)
        .unwrap_or(PAD_COLORS[index % PAD_COLORS.len()])
}

fn obstacle_color(world: &World, index: usize) -> [u8; 3] {
    world.scene().obstacles[index]
        .color
        .as_deref()
        .and_then(parse_color)
        .unwrap_or(OBSTACLE_COLOR)
}

fn scale(color: [u8; 3], factor: f64) -> [u8; 3] {
    color.map(|c| (f64::from(c) * factor).clamp(0.0, 255.0) as u8)
}

fn mix(a: [u8; 3], b: [u8; 3], t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|i| (f64::from(a[i]) * (1.0 - t) + f64::from(b[i]) * t) as u8)
}

// ---------------------------------------------------------------------------------------------
// pov

/// The nearest thing a ray meets: distance along the ray, colour, and whether it is a face
/// seen side-on (drawn darker, so corners read).
struct Hit {
    distance: f64,
    color: [u8; 3],
    side: bool,
}

/// Distance along the unit ray `(ox, oy) + t (dx, dy)` to `shape`, and whether the face hit
/// is a `y` face (for rectangles).
fn ray_shape(shape: &Shape, (ox, oy): (f64, f64), (dx, dy): (f64, f64)) -> Option<(f64, bool)> {
    match *shape {
        Shape::Circle { x, y, radius_m } => {
            let (fx, fy) = (ox - x, oy - y);
            let b = fx * dx + fy * dy;
            let c = fx * fx + fy * fy - radius_m * radius_m;
            let disc = b * b - c;
            if disc < 0.0 {
                return None;
            }
            let t = -b - disc.sqrt();
            (t > 1e-6).then_some((t, false))
        }
        Shape::Rect {
            x,
            y,
            width_m,
            height_m,
        } => {
            let slab = |o: f64, d: f64, lo: f64, hi: f64| {
                if d.abs() < 1e-12 {
                    if o < lo || o > hi {
                        (f64::INFINITY, f64::NEG_INFINITY)
                    } else {
                        (f64::NEG_INFINITY, f64::INFINITY)
                    }
                } else {
                    let (a, b) = ((lo - o) / d, (hi - o) / d);
                    (a.min(b), a.max(b))
                }
            };
            let (tx0, tx1) = slab(ox, dx, x - width_m / 2.0, x + width_m / 2.0);
            let (ty0, ty1) = slab(oy, dy, y - height_m / 2.0, y + height_m / 2.0);
            let enter = tx0.max(ty0);
            let exit = tx1.min(ty1);
            (enter <= exit && enter > 1e-6).then_some((enter, ty0 > tx0))
        }
    }
}

fn cast(world: &World, origin: (f64, f64), dir: (f64, f64)) -> Hit {
    let floor = world.scene().floor;
    // The floor's edge walls, seen from inside.
    let edge = |o: f64, d: f64, size: f64| {
        if d > 1e-12 {
            (size - o) / d
        } else if d < -1e-12 {
            -o / d
        } else {
            f64::INFINITY
        }
    };
    let (tx, ty) = (
        edge(origin.0, dir.0, floor.width_m),
        edge(origin.1, dir.1, floor.height_m),
    );
    let mut hit = Hit {
        distance: tx.min(ty).max(1e-3),
        color: BOUNDARY_COLOR,
        side: ty < tx,
    };
    for (i, obstacle) in world.scene().obstacles.iter().enumerate() {
        if let Some((t, side)) = ray_shape(&obstacle.shape, origin, dir) {
            if t < hit.distance {
                hit = Hit {
                    distance: t,
                    color: obstacle_color(world, i),
                    side,
                };
            }
        }
    }
    hit
}

fn sky(row: u32, horizon: f64) -> [u8; 3] {
    mix(
        [150, 190, 235],
        [215, 230, 245],
        f64::from(row) / horizon.max(1.0),
    )
}

/// What the floor looks like at `(x, y)`: pads, then 1 m tiles.
fn floor_color(world: &World, x: f64, y: f64) -> [u8; 3] {
    for (i, pad) in world.scene().pads.iter().enumerate() {
        let d = (x - pad.x).hypot(y - pad.y);
        if d <= pad.radius_m {
            let ring = d > pad.radius_m * 0.8;
            return if ring {
                scale(pad_color(world, i), 0.6)
            } else {
                pad_color(world, i)
            };
        }
    }
    if (x.floor() as i64 + y.floor() as i64) % 2 == 0 {
        [206, 202, 194]
    } else {
        [188, 184, 176]
    }
}

fn fog(color: [u8; 3], distance: f64) -> [u8; 3] {
    mix(color, [200, 205, 210], distance / 25.0)
}

/// The `pov` camera's geometry for one frame.
struct PovCamera {
    origin: (f64, f64),
    yaw: f64,
    focal: f64,
    horizon: f64,
    width: u32,
}

/// What one image column shows, top to bottom: sky, a wall, maybe an object, the floor.
struct PovColumn {
    dir: (f64, f64),
    cos_rel: f64,
    wall_top: f64,
    wall_bottom: f64,
    wall: [u8; 3],
    /// `(top, bottom, colour)` of the nearest object in front of the wall.
    object: Option<(f64, f64, [u8; 3])>,
}

impl PovCamera {
    fn column(&self, world: &World, col: u32) -> PovColumn {
        let offset = (f64::from(self.width) / 2.0 - f64::from(col) - 0.5) / self.focal;
        let relative = offset.atan();
        let angle = self.yaw + relative;
        let dir = (angle.cos(), angle.sin());
        let cos_rel = relative.cos();
        let hit = cast(world, self.origin, dir);
        let perpendicular = hit.distance * cos_rel;
        let shade = if hit.side { 0.75 } else { 1.0 } / (1.0 + 0.08 * hit.distance);
        PovColumn {
            dir,
            cos_rel,
            wall_top: self.horizon - (WALL_HEIGHT_M - POV_HEIGHT_M) * self.focal / perpendicular,
            wall_bottom: self.horizon + POV_HEIGHT_M * self.focal / perpendicular,
            wall: fog(scale(hit.color, shade * 1.1), hit.distance),
            object: self.nearest_object(world, dir, cos_rel, hit.distance),
        }
    }

    /// The nearest object the ray meets before `limit`, drawn as a small box.
    fn nearest_object(
        &self,
        world: &World,
        dir: (f64, f64),
        cos_rel: f64,
        limit: f64,
    ) -> Option<(f64, f64, [u8; 3])> {
        let (t, side, object) = world
            .objects()
            .iter()
            .filter(|o| o.held_by.is_none())
            .filter_map(|o| {
                let shape = Shape::Rect {
                    x: o.x,
                    y: o.y,
                    width_m: o.size_m,
                    height_m: o.size_m,
                };
                ray_shape(&shape, self.origin, dir).map(|(t, side)| (t, side, o))
            })
            .filter(|(t, _, _)| *t < limit)
            .min_by(|a, b| a.0.total_cmp(&b.0))?;
        let p = t * cos_rel;
        let top = self.horizon + (POV_HEIGHT_M - object.size_m) * self.focal / p;
        let bottom = self.horizon + POV_HEIGHT_M * self.focal / p;
        Some((
            top,
            bottom,
            fog(scale(object.color, if side { 0.8 } else { 1.0 }), t),
        ))
    }

    fn pixel(&self, world: &World, column: &PovColumn, row: u32) -> [u8; 3] {
        let y = f64::from(row) + 0.5;
        match column.object {
            Some((top, bottom, color)) if y >= top && y <= bottom => color,
            _ if y < column.wall_top => sky(row, self.horizon),
            _ if y <= column.wall_bottom => column.wall,
            _ => {
                let along = POV_HEIGHT_M * self.focal / (y - self.horizon) / column.cos_rel;
                let x = self.origin.0 + column.dir.0 * along;
                let fy = self.origin.1 + column.dir.1 * along;
                fog(floor_color(world, x, fy), along)
            }
        }
    }
}

fn render_pov(world: &World, width: u32, height: u32) -> RgbImage {
    let robot = world.robot();
    let camera = PovCamera {
        origin: (robot.x, robot.y),
        yaw: robot.yaw,
        focal: f64::from(width) / 2.0 / (POV_FOV_DEG.to_radians() / 2.0).tan(),
        horizon: f64::from(height) / 2.0,
        width,
    };
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    for col in 0..width {
        let column = camera.column(world, col);
        for row in 0..height {
            let at = ((row * width + col) * 3) as usize;
            pixels[at..at + 3].copy_from_slice(&camera.pixel(world, &column, row));
        }
    }
    RgbImage {
        width,
        height,
        pixels,
    }
}

// ---------------------------------------------------------------------------------------------
// topdown

/// World metres → pixels: `x` right, `y` up.
struct View {
    scale: f64,
    left: f64,
    top: f64,
    floor_height: f64,
}

impl View {
    fn fit(world: &World, width: u32, height: u32) -> View {
        let floor = world.scene().floor;
        let margin = (f64::from(width.min(height)) * 0.04).max(2.0);
        let scale = ((f64::from(width) - 2.0 * margin) / floor.width_m)
            .min((f64::from(height) - 2.0 * margin) / floor.height_m)
            .max(0.01);
        View {
            scale,
            left: (f64::from(width) - floor.width_m * scale) / 2.0,
            top: (f64::from(height) - floor.height_m * scale) / 2.0,
            floor_height: floor.height_m,
        }
    }

    fn point(&self, x: f64, y: f64) -> (f32, f32) {
        (
            (self.left + x * self.scale) as f32,
            (self.top + (self.floor_height - y) * self.scale) as f32,
        )
    }

    fn length(&self, metres: f64) -> f32 {
        (metres * self.scale) as f32
    }
}

fn paint(color: [u8; 3], alpha: u8) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color_rgba8(color[0], color[1], color[2], alpha);
    paint.anti_alias = true;
    paint
}

fn fill_rect(pixmap: &mut Pixmap, view: &View, (cx, cy): (f64, f64), (w, h): (f64, f64), color: [u8; 3]) {
    let (x, y) = view.point(cx - w / 2.0, cy + h / 2.0);
    if let Some(rect) = Rect::from_xywh(x, y, view.length(w).max(1.0), view.length(h).max(1.0)) {
        fill_rect_path(pixmap, rect, &paint(color, 255));
    }
}

/// Fills `rect` as a path: tiny-skia's anti-aliased `fill_rect` trips a debug assertion on
/// some sub-pixel rectangles.
fn fill_rect_path(pixmap: &mut Pixmap, rect: Rect, paint: &Paint<'_>) {
    let path = PathBuilder::from_rect(rect);
    pixmap.fill_path(&path, paint, FillRule::Winding, Transform::identity(), None);
}

fn fill_circle(pixmap: &mut Pixmap, center: (f32, f32), radius: f32, color: [u8; 3], alpha: u8) {
    if let Some(path) = PathBuilder::from_circle(center.0, center.1, radius.max(1.0)) {
        pixmap.fill_path(
            &path,
            &paint(color, alpha),
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
}

fn stroke_circle(pixmap: &mut Pixmap, center: (f32, f32), radius: f32, color: [u8; 3], width: f32) {
    if let Some(path) = PathBuilder::from_circle(center.0, center.1, radius.max(1.0)) {
        let stroke = Stroke {
            width,
            ..Stroke::default()
        };
        pixmap.stroke_path(&path, &paint(color, 255), &stroke, Transform::identity(), None);
    }
}

fn stroke_polyline(pixmap: &mut Pixmap, points: &[(f32, f32)], color: [u8; 3], width: f32) {
    let mut builder = PathBuilder::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        if i == 0 {
            builder.move_to(x, y);
        } else {
            builder.line_to(x, y);
        }
    }
    if let Some(path) = builder.finish() {
        let stroke = Stroke {
            width,
            line_cap: LineCap::Round,
            ..Stroke::default()
        };
        pixmap.stroke_path(&path, &paint(color, 255), &stroke, Transform::identity(), None);
    }
}

fn render_topdown(world: &World, width: u32, height: u32) -> Result<RgbImage, SimError> {
    let background = topdown_background(world, width, height)?;
    Ok(render_topdown_over(world, background))
}

/// The parts of the `topdown` view that never change (floor, grid, pads, obstacles), to
/// render once and reuse with [`render_topdown_over`].
pub(crate) fn topdown_background(world: &World, width: u32, height: u32) -> Result<Pixmap, SimError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(invalid(format!("the frame must be 1..={MAX_SIDE} pixels a side")));
    }
    let mut pixmap = Pixmap::new(width, height)
        .ok_or_else(|| SimError::new("CAPTURE_FAILED", "cannot allocate the frame"))?;
    pixmap.fill(Color::from_rgba8(40, 44, 52, 255));
    let view = View::fit(world, width, height);
    let scene = world.scene();
    let floor = scene.floor;
    fill_rect(
        &mut pixmap,
        &view,
        (floor.width_m / 2.0, floor.height_m / 2.0),
        (floor.width_m, floor.height_m),
        [232, 229, 222],
    );
    draw_grid(&mut pixmap, &view, floor.width_m, floor.height_m);
    for (i, pad) in scene.pads.iter().enumerate() {
        let center = view.point(pad.x, pad.y);
        let color = pad_color(world, i);
        fill_circle(&mut pixmap, center, view.length(pad.radius_m), color, 170);
        stroke_circle(
            &mut pixmap,
            center,
            view.length(pad.radius_m),
            scale(color, 0.6),
            view.length(0.04).max(1.1),
        );
        draw_label(
            &mut pixmap,
            &view,
            pad_label(&pad.id),
            center,
            pad.radius_m,
            scale(color, 0.35),
        );
    }
    for (i, obstacle) in scene.obstacles.iter().enumerate() {
        let color = obstacle_color(world, i);
        match obstacle.shape {
            Shape::Rect {
                x,
                y,
                width_m,
                height_m,
            } => fill_rect(&mut pixmap, &view, (x, y), (width_m, height_m), color),
            Shape::Circle { x, y, radius_m } => {
                fill_circle(&mut pixmap, view.point(x, y), view.length(radius_m), color, 255)
            }
        }
    }
    Ok(pixmap)
}

/// Draws what moves (path, objects, robot) over a copy of the background.
pub(crate) fn render_topdown_over(world: &World, mut pixmap: Pixmap) -> RgbImage {
    let view = View::fit(world, pixmap.width(), pixmap.height());
    let path: Vec<(f32, f32)> = world
        .remaining_path()
        .iter()
        .map(|&(x, y)| view.point(x, y))
        .collect();
    if path.len() >= 2 {
        stroke_polyline(&mut pixmap, &path, [0, 122, 255], view.length(0.06).max(2.0));
        if let Some(&goal) = path.last() {
            stroke_circle(
                &mut pixmap,
                goal,
                view.length(0.15),
                [0, 122, 255],
                view.length(0.04).max(1.5),
            );
        }
    }
    for object in world.objects().iter().filter(|o| o.held_by.is_none()) {
        fill_rect(
            &mut pixmap,
            &view,
            (object.x, object.y),
            (object.size_m, object.size_m),
            scale(object.color, 0.5),
        );
        let inner = object.size_m * 0.75;
        fill_rect(
            &mut pixmap,
            &view,
            (object.x, object.y),
            (inner, inner),
            object.color,
        );
    }
    draw_robot(&mut pixmap, &view, world);
    to_rgb(&pixmap)
}

fn draw_grid(pixmap: &mut Pixmap, view: &View, width_m: f64, height_m: f64) {
    let color = [212, 208, 200];
    let line = view.length(0.015).max(1.1);
    for i in 1..width_m.ceil() as i64 {
        let x = i as f64;
        stroke_polyline(
            pixmap,
            &[view.point(x, 0.0), view.point(x, height_m)],
            color,
            line,
        );
    }
    for i in 1..height_m.ceil() as i64 {
        let y = i as f64;
        stroke_polyline(pixmap, &[view.point(0.0, y), view.point(width_m, y)], color, line);
    }
}

fn draw_robot(pixmap: &mut Pixmap, view: &View, world: &World) {
    let robot = world.robot();
    let center = view.point(robot.x, robot.y);
    let radius = view.length(robot.radius_m);
    fill_circle(pixmap, center, radius, [250, 250, 250], 255);
    stroke_circle(pixmap, center, radius, [20, 24, 30], view.length(0.04).max(1.5));
    let (sin, cos) = robot.yaw.sin_cos();
    let nose = view.point(
        robot.x + cos * robot.radius_m * 0.9,
        robot.y + sin * robot.radius_m * 0.9,
    );
    let back = |side: f64| {
        let angle = robot.yaw + side * 2.5;
        view.point(
            robot.x + angle.cos() * robot.radius_m * 0.55,
            robot.y + angle.sin() * robot.radius_m * 0.55,
        )
    };
    let (left, right) = (back(1.0), back(-1.0));
    let mut builder = PathBuilder::new();
    builder.move_to(nose.0, nose.1);
    builder.line_to(left.0, left.1);
    builder.line_to(right.0, right.1);
    builder.close();
    if let Some(path) = builder.finish() {
        pixmap.fill_path(
            &path,
            &paint([220, 50, 47], 255),
            FillRule::Winding,
            Transform::identity(),
            None,
        );
    }
    for object in world.objects().iter().filter(|o| o.held_by.is_some()) {
        let size = object.size_m.min(robot.radius_m);
        fill_rect(
            pixmap,
            view,
            (robot.x - cos * size * 0.6, robot.y - sin * size * 0.6),
            (size, size),
            object.color,
        );
    }
}

fn to_rgb(pixmap: &Pixmap) -> RgbImage {
    // Every pixel is opaque (the background is), so premultiplied RGBA is plain RGBA.
    let mut pixels = Vec::with_capacity(pixmap.data().len() / 4 * 3);
    for rgba in pixmap.data().chunks_exact(4) {
        pixels.extend_from_slice(&rgba[..3]);
    }
    RgbImage {
        width: pixmap.width(),
        height: pixmap.height(),
        pixels,
    }
}

/// The part of a pad id worth printing: `pad_B` → `B`.
fn pad_label(id: &str) -> &str {
    id.strip_prefix("pad_").unwrap_or(id)
}

/// Draws `text` centred on `center`, its height about the pad's radius, with a 5×7 font.
fn draw_label(
    pixmap: &mut Pixmap,
    view: &View,
    text: &str,
    center: (f32, f32),
    radius_m: f64,
    color: [u8; 3],
) {
    let glyphs: Vec<[u8; 7]> = text.chars().take(4).filter_map(glyph).collect();
    if glyphs.is_empty() {
        return;
    }
    let dot = (view.length(radius_m) * 0.9 / 7.0).max(1.0);
    let total_width = dot * (glyphs.len() as f32 * 6.0 - 1.0);
    let (left, top) = (center.0 - total_width / 2.0, center.1 - dot * 3.5);
    let paint = paint(color, 255);
    for (g, rows) in glyphs.iter().enumerate() {
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5 {
                if bits & (0x10 >> c) != 0 {
                    let x = left + (g as f32 * 6.0 + c as f32) * dot;
                    let y = top + r as f32 * dot;
                    if let Some(rect) = Rect::from_xywh(x, y, dot, dot) {
                        fill_rect_path(pixmap, rect, &paint);
                    }
                }
            }
        }
    }
}

/// A 5×7 glyph (one byte a row, low five bits, left = 0x10) for `A`–`Z` and `0`–`9`.
fn glyph(c: char) -> Option<[u8; 7]> {
    const LETTERS: [[u8; 7]; 26] = [
        [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], // A
        [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E], // B
        [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E], // C
        [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E], // D
        [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F], // E
        [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10], // F
        [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F], // G
        [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], // H
        [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], // I
        [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C], // J
        [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], // K
        [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F], // L
        [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11], // M
        [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11], // N
        [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], // O
        [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10], // P
        [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D], // Q
        [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11], // R
        [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E], // S
        [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04], // T
        [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], // U
        [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04], // V
        [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A], // W
        [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11], // X
        [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04], // Y
        [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F], // Z
    ];
    const DIGITS: [[u8; 7]; 10] = [
        [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], // 0
        [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E], // 1
        [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], // 2
        [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E], // 3
        [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], // 4
        [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E], // 5
        [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], // 6
        [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08], // 7
        [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], // 8
        [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C], // 9
    ];
    let c = c.to_ascii_uppercase();
    match c {
        'A'..='Z' => Some(LETTERS[c as usize - 'A' as usize]),
        '0'..='9' => Some(DIGITS[c as usize - '0' as usize]),
        _ => None,
    }
}
