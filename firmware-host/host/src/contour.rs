//! The bounded contour polygon of a `Result`: outline of the largest foreground region,
//! traced pixel by pixel, then simplified (Ramer-Douglas-Peucker) to a vertex budget.

/// 8 neighbours in clockwise order, starting west (image y grows downwards).
const DIRS: [(i64, i64); 8] = [
    (-1, 0),
    (-1, -1),
    (0, -1),
    (1, -1),
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
];

/// Outline of the largest 8-connected region of non-zero pixels in a `w x h` class mask,
/// with at most `max_points` vertices (clockwise, pixel coordinates). Empty if no foreground.
pub fn outline(mask: &[u8], w: usize, h: usize, max_points: usize) -> Vec<(u32, u32)> {
    let Some(region) = largest_region(mask, w, h) else {
        return Vec::new();
    };
    let boundary = trace(&region, w, h);
    simplify_closed(&boundary, max_points.max(1))
}

/// Membership mask of the largest 8-connected foreground region.
fn largest_region(mask: &[u8], w: usize, h: usize) -> Option<Vec<bool>> {
    let mut label = vec![0u32; w * h];
    let (mut best, mut best_size, mut next) = (0u32, 0usize, 0u32);
    let mut stack = Vec::new();
    for start in 0..w * h {
        if mask[start] == 0 || label[start] != 0 {
            continue;
        }
        next += 1;
        label[start] = next;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            for (dx, dy) in DIRS {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                    continue;
                }
                let j = ny as usize * w + nx as usize;
                if mask[j] != 0 && label[j] == 0 {
                    label[j] = next;
                    stack.push(j);
                }
            }
        }
        if size > best_size {
            (best, best_size) = (next, size);
        }
    }
    (best_size > 0).then(|| label.iter().map(|&l| l == best).collect())
}

/// Moore-neighbour tracing of a single 8-connected region, from its first pixel in raster
/// order; stops when it re-enters the start pixel in the same direction (Jacob's criterion).
fn trace(region: &[bool], w: usize, h: usize) -> Vec<(u32, u32)> {
    let inside = |x: i64, y: i64| {
        x >= 0 && y >= 0 && x < w as i64 && y < h as i64 && region[y as usize * w + x as usize]
    };
    let Some(first) = region.iter().position(|&b| b) else {
        return Vec::new();
    };
    let start = ((first % w) as i64, (first / w) as i64);
    let mut out = vec![(start.0 as u32, start.1 as u32)];
    // The west neighbour of the first raster pixel is outside: begin the scan there.
    let (mut cur, mut back) = (start, 0usize);
    let mut first_step: Option<((i64, i64), usize)> = None;
    for _ in 0..4 * region.len() + 8 {
        let mut step = None;
        for k in 1..=8 {
            let d = (back + k) % 8;
            let n = (cur.0 + DIRS[d].0, cur.1 + DIRS[d].1);
            if inside(n.0, n.1) {
                // The last outside cell scanned, seen from `n`, is where the next scan starts.
                let p = (cur.0 + DIRS[(d + 7) % 8].0, cur.1 + DIRS[(d + 7) % 8].1);
                let nb = (0..8)
                    .find(|&j| (n.0 + DIRS[j].0, n.1 + DIRS[j].1) == p)
                    .unwrap_or(0);
                step = Some((n, nb));
                break;
            }
        }
        let Some((n, nb)) = step else {
            return out; // a single isolated pixel
        };
        match first_step {
            None => first_step = Some((n, nb)),
            Some(s) if cur == start && (n, nb) == s => {
                out.pop(); // the start pixel was pushed again on arrival
                return out;
            }
            Some(_) => {}
        }
        out.push((n.0 as u32, n.1 as u32));
        (cur, back) = (n, nb);
    }
    out
}

/// Closed-polygon RDP: the tolerance grows until at most `max_points` vertices remain.
fn simplify_closed(points: &[(u32, u32)], max_points: usize) -> Vec<(u32, u32)> {
    if points.len() <= max_points {
        return points.to_vec();
    }
    // Split the ring at its first point and the point farthest from it.
    let p0 = points[0];
    let far = (1..points.len())
        .max_by_key(|&i| {
            let (dx, dy) = (
                points[i].0 as i64 - p0.0 as i64,
                points[i].1 as i64 - p0.1 as i64,
            );
            dx * dx + dy * dy
        })
        .unwrap_or(0);
    let mut eps = 0.5f64;
    loop {
        let mut keep = vec![false; points.len()];
        keep[0] = true;
        keep[far] = true;
        rdp(points, 0, far, eps, &mut keep);
        let ring: Vec<(u32, u32)> = points[far..].iter().chain(&points[..1]).copied().collect();
        let mut keep_ring = vec![false; ring.len()];
        rdp(&ring, 0, ring.len() - 1, eps, &mut keep_ring);
        for (i, k) in keep_ring.iter().enumerate().take(ring.len() - 1) {
            keep[far + i] |= *k;
        }
        let out: Vec<_> = points
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(p, _)| *p)
            .collect();
        if out.len() <= max_points {
            return out;
        }
        eps *= 1.5;
    }
}

fn rdp(p: &[(u32, u32)], a: usize, b: usize, eps: f64, keep: &mut [bool]) {
    if b <= a + 1 {
        return;
    }
    let (ax, ay) = (p[a].0 as f64, p[a].1 as f64);
    let (bx, by) = (p[b].0 as f64, p[b].1 as f64);
    let len = ((bx - ax).powi(2) + (by - ay).powi(2)).sqrt();
    let dist = |q: (u32, u32)| {
        let (qx, qy) = (q.0 as f64, q.1 as f64);
        if len == 0.0 {
            ((qx - ax).powi(2) + (qy - ay).powi(2)).sqrt()
        } else {
            ((bx - ax) * (ay - qy) - (ax - qx) * (by - ay)).abs() / len
        }
    };
    let (mut idx, mut dmax) = (a, 0.0);
    for (i, &q) in p.iter().enumerate().take(b).skip(a + 1) {
        let d = dist(q);
        if d > dmax {
            (idx, dmax) = (i, d);
        }
    }
    if dmax > eps {
        keep[idx] = true;
        rdp(p, a, idx, eps, keep);
        rdp(p, idx, b, eps, keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_with(w: usize, h: usize, f: impl Fn(usize, usize) -> bool) -> Vec<u8> {
        (0..w * h).map(|i| f(i % w, i / w) as u8).collect()
    }

    #[test]
    fn a_rectangle_traces_its_border_and_simplifies_to_its_corners() {
        let m = mask_with(10, 8, |x, y| (2..7).contains(&x) && (3..6).contains(&y));
        let full = outline(&m, 10, 8, 1000);
        // The border of a 5x3 block: 2 * (5 + 3) - 4 pixels, each once.
        assert_eq!(full.len(), 12);
        assert_eq!(full[0], (2, 3));
        assert!(
            full.iter()
                .all(|&(x, y)| x == 2 || x == 6 || y == 3 || y == 5)
        );
        let mut corners = outline(&m, 10, 8, 4);
        corners.sort();
        assert_eq!(corners, vec![(2, 3), (2, 5), (6, 3), (6, 5)]);
    }

    #[test]
    fn the_largest_region_wins_and_the_budget_holds_for_a_disc() {
        let m = mask_with(64, 64, |x, y| {
            let d2 = (x as i64 - 40).pow(2) + (y as i64 - 30).pow(2);
            d2 < 15 * 15 || (x < 3 && y < 3)
        });
        let pts = outline(&m, 64, 64, 16);
        assert!(pts.len() <= 16 && pts.len() >= 8, "{} points", pts.len());
        for &(x, y) in &pts {
            let d = ((x as f64 - 40.0).powi(2) + (y as f64 - 30.0).powi(2)).sqrt();
            assert!(
                (12.0..=15.0).contains(&d),
                "({x}, {y}) is {d} from the centre"
            );
        }
    }

    #[test]
    fn empty_and_single_pixel_masks() {
        assert!(outline(&[0; 16], 4, 4, 8).is_empty());
        let mut m = vec![0u8; 16];
        m[5] = 1;
        assert_eq!(outline(&m, 4, 4, 8), vec![(1, 1)]);
    }
}
