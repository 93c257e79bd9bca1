//! `plot`: latency by percentile for several `.hgrm` files in one SVG, drawn
//! the way HdrHistogram's plotter does: the x axis is 1/(1-percentile) on a log
//! scale (so 90%, 99%, 99.9%… are evenly spaced), the y axis is latency.

use std::fmt::Write as _;

/// One run: a name and its (percentile, latency ms) points.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (percentile in 0..1, value in ms), increasing.
    pub points: Vec<(f64, f64)>,
}

/// Reads the rows of an `.hgrm` file.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let v: f64 = f.next()?.parse().ok()?;
            let p: f64 = f.next()?.parse().ok()?;
            Some((p, v))
        })
        .collect()
}

const W: f64 = 900.0;
const H: f64 = 520.0;
const L: f64 = 80.0;
const R: f64 = 200.0;
const T: f64 = 40.0;
const B: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Renders the chart. Percentiles are cut at 99.999%.
pub fn svg(title: &str, series: &[Series]) -> String {
    let max_x = 5.0; // log10(1/(1-0.99999))
    let xv = |p: f64| (1.0 / (1.0 - p.min(0.99999))).log10();
    let max_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let max_y = nice_ceiling(max_y);
    let px = |x: f64| L + x / max_x * (W - L - R);
    let py = |y: f64| H - B - y / max_y * (H - T - B);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (W - R + L) / 2.0,
        esc(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#ddd"/>"##,
            T,
            H - B
        );
        let _ = writeln!(
            o,
            r#"<text x="{x}" y="{}" text-anchor="middle">{label}</text>"#,
            H - B + 18.0
        );
    }
    for i in 0..=5 {
        let y = max_y * i as f64 / 5.0;
        let yy = py(y);
        let _ = writeln!(
            o,
            r##"<line x1="{L}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/>"##,
            W - R
        );
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            L - 6.0,
            yy + 4.0,
            fmt_ms(y)
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (W - R + L) / 2.0,
        H - 16.0
    );
    let _ = writeln!(
        o,
        r#"<text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">latency</text>"#,
        (H - B + T) / 2.0,
        (H - B + T) / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0 <= 0.99999)
            .map(|&(p, v)| format!("{:.1},{:.1}", px(xv(p)), py(v)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = T + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/>"#,
            W - R + 15.0,
            W - R + 40.0
        );
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}">{}</text>"#,
            W - R + 46.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

fn nice_ceiling(v: f64) -> f64 {
    let e = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * e >= v {
            return m * e;
        }
    }
    10.0 * e
}

fn fmt_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_polyline_per_run_on_a_log_percentile_axis() {
        let a = parse_hgrm("       Value     Percentile TotalCount 1/(1-Percentile)\n\n       0.050 0.000000000000          1           1.00\n       0.060 0.900000000000         90          10.00\n       0.200 0.990000000000         99         100.00\n       0.400 1.000000000000        100\n#[Mean    =        0.070]\n");
        assert_eq!(a.len(), 4);
        assert_eq!(a[1], (0.9, 0.06));
        let b = vec![(0.0, 0.1), (0.5, 0.12), (0.99, 0.3)];
        let out = svg(
            "t <x>",
            &[
                Series {
                    name: "direct".into(),
                    points: a,
                },
                Series {
                    name: "wsrelay".into(),
                    points: b,
                },
            ],
        );
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("99.9%") && out.contains("direct") && out.contains("t &lt;x&gt;"));
        // 90% sits one fifth along the axis, 99% two fifths.
        let x90 = L + 1.0 / 5.0 * (W - L - R);
        assert!(out.contains(&format!("{:.1},", x90)), "{out}");
    }
}
