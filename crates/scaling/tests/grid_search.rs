//! The grid search against a direct point-by-point evaluation, and numpy's linspace semantics.
use scaling::fit::cells::Cells;
use scaling::fit::grid::{grid_search, linspace, GridSpec};
use scaling::law::{Law, LawForm};

fn cells() -> Cells {
    // Paper-like cells from a known law plus a deterministic perturbation.
    let mut c = Cells { n: vec![], t: vec![], y: vec![] };
    for (i, n) in [0.5, 1.8, 4.0, 7.0].iter().enumerate() {
        for (j, v) in [1.0, 4.0, 16.0, 36.0, 64.0, 144.0, 576.0].iter().enumerate() {
            let y = 0.55 * f64::powf(*n, -0.08) * f64::powf(*v, -0.016) + 0.04 + 0.002 * (((i * 7 + j) as f64).sin());
            c.n.push(*n);
            c.t.push(*v);
            c.y.push(y);
        }
    }
    c
}

#[test]
fn linspace_matches_numpy() {
    // numpy.linspace(0, 0.2, 100)[1] == 0.2/99; endpoints included.
    let v = linspace(0.0, 0.2, 100);
    assert_eq!(v.len(), 100);
    assert_eq!(v[0], 0.0);
    assert!((v[99] - 0.2).abs() < 1e-15);
    assert!((v[1] - 0.2 / 99.0).abs() < 1e-15);
    assert_eq!(linspace(1.0, 2.0, 1), vec![1.0]);
}

#[test]
fn multiplicative_grid_equals_direct_evaluation() {
    let c = cells();
    let spec = GridSpec {
        scale: linspace(0.3, 0.7, 9),
        alpha: linspace(0.0, 0.2, 11),
        beta: linspace(0.0, 0.05, 11),
        offset: linspace(0.0, 0.3, 7),
    };
    let got = grid_search(&c, LawForm::Multiplicative, &spec).unwrap();
    let mut best = (f64::INFINITY, None);
    for &alpha in &spec.alpha {
        for &beta in &spec.beta {
            for &a in &spec.scale {
                for &d in &spec.offset {
                    let law = Law::Multiplicative { a, alpha, beta, d };
                    let sse: f64 =
                        (0..c.len()).map(|i| (a * c.n[i].powf(-alpha) * c.t[i].powf(-beta) + d - c.y[i]).powi(2)).sum();
                    if sse < best.0 {
                        best = (sse, Some(law));
                    }
                }
            }
        }
    }
    assert_eq!(got.points, 9 * 11 * 11 * 7);
    assert!((got.loss - best.0).abs() <= 1e-12 * best.0.max(1e-12), "{} vs {}", got.loss, best.0);
    assert_eq!(Some(got.law), best.1);
    assert!((c.sse(&got.law) - got.loss).abs() < 1e-12);
}

#[test]
fn additive_grid_equals_direct_evaluation() {
    let c = cells();
    let spec = GridSpec {
        scale: linspace(0.0, 1.0, 6),
        alpha: linspace(0.0, 1.0, 6),
        beta: linspace(0.0, 1.0, 6),
        offset: linspace(0.0, 0.6, 5),
    };
    let got = grid_search(&c, LawForm::Additive, &spec).unwrap();
    let mut best = f64::INFINITY;
    for &alpha in &spec.alpha {
        for &beta in &spec.beta {
            for &a in &spec.scale {
                for &b in &spec.scale {
                    for &e in &spec.offset {
                        let sse: f64 = (0..c.len())
                            .map(|i| (a / c.n[i].powf(alpha) + b / c.t[i].powf(beta) + e - c.y[i]).powi(2))
                            .sum();
                        best = best.min(sse);
                    }
                }
            }
        }
    }
    assert_eq!(got.points, 6 * 6 * 6 * 6 * 5);
    assert!((got.loss - best).abs() <= 1e-12 * best.max(1e-12));
}

#[test]
fn empty_grid_or_no_cells_is_none() {
    let mut spec = GridSpec::paper();
    spec.offset.clear();
    assert!(grid_search(&cells(), LawForm::Multiplicative, &spec).is_none());
    let empty = Cells { n: vec![], t: vec![], y: vec![] };
    assert!(grid_search(&empty, LawForm::Multiplicative, &GridSpec::paper()).is_none());
}
