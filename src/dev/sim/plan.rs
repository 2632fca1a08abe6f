//! Path planning: A* on an occupancy grid of obstacles inflated by the robot's clearance,
//! then line-of-sight shortcuts so the robot drives straight segments.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::scene::Scene;

/// Finest grid cell, metres.
const FINEST_CELL_M: f64 = 0.1;

/// Most cells a grid may have (a huge floor gets coarser cells).
const MAX_CELLS: f64 = 250_000.0;

/// A point on the floor, metres.
pub type Point = (f64, f64);

/// Slack kept by "tight" cells beyond the robot's radius, metres.
const TIGHT_SLACK_M: f64 = 0.02;

/// How much more a step through a tight cell costs than through a free one.
const TIGHT_COST: f64 = 8.0;

/// What a cell is to the robot's centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// The body would overlap something.
    Blocked,
    /// The body fits, but closer than the planning clearance: used only when needed (to
    /// leave a wall the robot bumped into, or to reach a goal close to one).
    Tight,
    /// The body keeps the planning clearance.
    Free,
}

/// Where the robot's centre may be: cells whose centre keeps `clearance` from every obstacle
/// and from the floor's edges are free; cells where the body still fits are tight.
#[derive(Clone, Debug)]
pub struct Grid {
    cell: f64,
    cols: usize,
    rows: usize,
    cells: Vec<Cell>,
}

impl Grid {
    /// The grid of `scene` for a robot of radius `radius` that should keep `clearance`
    /// (≥ `radius`) metres from everything.
    pub fn build(scene: &Scene, radius: f64, clearance: f64) -> Grid {
        let (width, height) = (scene.floor.width_m, scene.floor.height_m);
        let cell = FINEST_CELL_M.max((width * height / MAX_CELLS).sqrt());
        let cols = ((width / cell).ceil() as usize).max(1);
        let rows = ((height / cell).ceil() as usize).max(1);
        let mut cells = Vec::with_capacity(cols * rows);
        for row in 0..rows {
            for col in 0..cols {
                let (x, y) = ((col as f64 + 0.5) * cell, (row as f64 + 0.5) * cell);
                cells.push(if is_clear(scene, x, y, clearance) {
                    Cell::Free
                } else if is_clear(scene, x, y, radius + TIGHT_SLACK_M) {
                    Cell::Tight
                } else {
                    Cell::Blocked
                });
            }
        }
        Grid {
            cell,
            cols,
            rows,
            cells,
        }
    }

    fn cell_of(&self, (x, y): Point) -> Option<usize> {
        if x < 0.0 || y < 0.0 {
            return None;
        }
        let (col, row) = ((x / self.cell) as usize, (y / self.cell) as usize);
        (col < self.cols && row < self.rows).then_some(row * self.cols + col)
    }

    fn center(&self, index: usize) -> Point {
        let (col, row) = (index % self.cols, index / self.cols);
        ((col as f64 + 0.5) * self.cell, (row as f64 + 0.5) * self.cell)
    }

    fn is_free(&self, index: usize) -> bool {
        self.cells[index] == Cell::Free
    }

    fn is_passable(&self, index: usize) -> bool {
        self.cells[index] != Cell::Blocked
    }

    /// Whether the straight segment `a`–`b` stays in free cells (the path's first and last
    /// cells excepted: they may be tight).
    fn segment_is_free(&self, a: Point, b: Point, ends: (usize, usize)) -> bool {
        let length = (b.0 - a.0).hypot(b.1 - a.1);
        let samples = (length / (self.cell * 0.25)).ceil().max(1.0) as usize;
        (0..=samples).all(|i| {
            let t = i as f64 / samples as f64;
            let p = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            self.cell_of(p)
                .is_some_and(|c| c == ends.0 || c == ends.1 || self.is_free(c))
        })
    }

    /// A collision-free polyline from `from` to `to` (both included), or `None` when `to` is
    /// not reachable. `from` may lie in a blocked cell (the robot grazing an obstacle).
    pub fn plan(&self, from: Point, to: Point) -> Option<Vec<Point>> {
        let start = self.cell_of(from)?;
        let goal = self.cell_of(to)?;
        if !self.is_passable(goal) {
            return None;
        }
        let cells = self.search(start, goal)?;
        let mut points: Vec<Point> = cells.iter().map(|&c| self.center(c)).collect();
        points[0] = from;
        *points.last_mut().expect("a path has its start") = to;
        Some(self.shortcut(&points, (start, goal)))
    }

    fn neighbours(&self, index: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let (col, row) = ((index % self.cols) as isize, (index / self.cols) as isize);
        const STEPS: [(isize, isize); 8] = [
            (1, 0),
            (-1, 0),
            (0, 1),
            (0, -1),
            (1, 1),
            (1, -1),
            (-1, 1),
            (-1, -1),
        ];
        STEPS.iter().filter_map(move |&(dc, dr)| {
            let at = |c: isize, r: isize| {
                (c >= 0 && r >= 0 && (c as usize) < self.cols && (r as usize) < self.rows)
                    .then(|| r as usize * self.cols + c as usize)
            };
            let next = at(col + dc, row + dr)?;
            if !self.is_passable(next) {
                return None;
            }
            let diagonal = dc != 0 && dr != 0;
            if diagonal {
                // No squeezing between two blocked cells at a corner.
                let side_a = at(col + dc, row)?;
                let side_b = at(col, row + dr)?;
                if !self.is_passable(side_a) || !self.is_passable(side_b) {
                    return None;
                }
            }
            let length = if diagonal { std::f64::consts::SQRT_2 } else { 1.0 };
            let penalty = if self.is_free(next) { 1.0 } else { TIGHT_COST };
            Some((next, length * penalty))
        })
    }

    /// A* over cells; costs in cell units, kept as integers (milli-cells) so the order of
    /// the open set, and so the path, is fully deterministic.
    fn search(&self, start: usize, goal: usize) -> Option<Vec<usize>> {
        let (gc, gr) = ((goal % self.cols) as f64, (goal / self.cols) as f64);
        let heuristic = |i: usize| {
            let (c, r) = ((i % self.cols) as f64, (i / self.cols) as f64);
            ((c - gc).hypot(r - gr) * 1000.0) as u64
        };
        let mut best = vec![u64::MAX; self.cells.len()];
        let mut came_from = vec![usize::MAX; self.cells.len()];
        let mut open = BinaryHeap::new();
        best[start] = 0;
        open.push(Reverse((heuristic(start), 0u64, start)));
        while let Some(Reverse((_, cost, index))) = open.pop() {
            if index == goal {
                return Some(self.walk_back(&came_from, start, goal));
            }
            if cost > best[index] {
                continue;
            }
            for (next, step) in self.neighbours(index) {
                let next_cost = cost + (step * 1000.0) as u64;
                if next_cost < best[next] {
                    best[next] = next_cost;
                    came_from[next] = index;
                    open.push(Reverse((next_cost + heuristic(next), next_cost, next)));
                }
            }
        }
        None
    }

    fn walk_back(&self, came_from: &[usize], start: usize, goal: usize) -> Vec<usize> {
        let mut cells = vec![goal];
        let mut at = goal;
        while at != start {
            at = came_from[at];
            cells.push(at);
        }
        cells.reverse();
        cells
    }

    /// Keeps only the waypoints needed to go around obstacles in straight lines.
    fn shortcut(&self, points: &[Point], ends: (usize, usize)) -> Vec<Point> {
        let mut out = vec![points[0]];
        let mut from = 0;
        while from + 1 < points.len() {
            let mut to = points.len() - 1;
            while to > from + 1 && !self.segment_is_free(points[from], points[to], ends) {
                to -= 1;
            }
            out.push(points[to]);
            from = to;
        }
        out
    }
}

/// Whether a disc of radius `clearance` at `(x, y)` touches no obstacle and stays on the floor.
pub fn is_clear(scene: &Scene, x: f64, y: f64, clearance: f64) -> bool {
    let on_floor = x >= clearance
        && y >= clearance
        && x <= scene.floor.width_m - clearance
        && y <= scene.floor.height_m - clearance;
    on_floor
        && scene
            .obstacles
            .iter()
            .all(|o| o.shape.signed_distance(x, y) >= clearance)
}

/// The length of a polyline.
pub fn path_length(points: &[Point]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).hypot(w[1].1 - w[0].1))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_around_the_wall() {
        let scene = Scene::default_scene();
        let grid = Grid::build(&scene, scene.robot.radius_m, scene.robot.radius_m + 0.1);
        let path = grid.plan((1.5, 4.0), (8.5, 6.5)).expect("pad_B is reachable");
        assert_eq!(path.first(), Some(&(1.5, 4.0)));
        assert_eq!(path.last(), Some(&(8.5, 6.5)));
        assert!(path.len() >= 3, "the straight line crosses the wall: {path:?}");
        // Every point along the path keeps (nearly) the clearance.
        for w in path.windows(2) {
            for i in 0..=50 {
                let t = i as f64 / 50.0;
                let (x, y) = (w[0].0 + (w[1].0 - w[0].0) * t, w[0].1 + (w[1].1 - w[0].1) * t);
                assert!(
                    is_clear(&scene, x, y, scene.robot.radius_m),
                    "({x}, {y}) hits something"
                );
            }
        }
        assert!(path_length(&path) > 7.0_f64.hypot(2.5));
    }

    #[test]
    fn no_path_into_a_closed_pen_or_an_obstacle() {
        let scene = Scene::builtin("two_rooms").unwrap();
        let grid = Grid::build(&scene, scene.robot.radius_m, scene.robot.radius_m + 0.1);
        assert!(grid.plan((1.0, 1.0), (3.0, 4.5)).is_none(), "the pen is closed");
        assert!(grid.plan((1.0, 1.0), (10.5, 4.5)).is_some(), "through the door");
        assert!(grid.plan((1.0, 1.0), (6.0, 1.0)).is_none(), "inside a wall");
        assert!(grid.plan((1.0, 1.0), (60.0, 1.0)).is_none(), "off the floor");
    }
}
