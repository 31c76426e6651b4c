//! Atomic output onto an existing folder fails before writing anything; law parameters outside the
//! fit's constraints are refused by name.
use scaling::law::Law;
use scaling::output::write_atomic;

#[test]
fn atomic_write_onto_a_folder_fails_naming_it_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("DIR");
    std::fs::create_dir(&target).unwrap();
    let e = write_atomic(&target, b"{}").unwrap_err().to_string();
    assert!(e.contains(&target.display().to_string()) && e.contains("folder"), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("DIR")], "left behind: {left:?}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn atomic_write_gives_a_new_file_the_mode_of_a_plain_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // The mode the OS gives a new file under this process's umask: the independent reference.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    let want = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
    let p = dir.path().join("atomic.json");
    write_atomic(&p, b"{}").unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, want);
}

#[test]
fn law_check_names_the_parameter_outside_the_fit_constraints() {
    let ok = Law::Multiplicative { a: 0.5, alpha: 0.07, beta: 0.0, d: 0.0 };
    assert!(ok.check().is_ok());
    for (law, name) in [
        (Law::Multiplicative { a: -1.0, alpha: 0.07, beta: 0.01, d: 0.0 }, "A = -1"),
        (Law::Multiplicative { a: 0.0, alpha: 0.07, beta: 0.01, d: 0.0 }, "A = 0"),
        (Law::Multiplicative { a: 0.5, alpha: -0.1, beta: 0.01, d: 0.0 }, "alpha = -0.1"),
        (Law::Multiplicative { a: 0.5, alpha: 0.1, beta: -0.01, d: 0.0 }, "beta = -0.01"),
        (Law::Multiplicative { a: 0.5, alpha: 0.1, beta: 0.01, d: -0.2 }, "D = -0.2"),
        (Law::Multiplicative { a: 0.5, alpha: f64::NAN, beta: 0.01, d: 0.0 }, "alpha = NaN"),
        (Law::Additive { a: 0.5, alpha: 0.1, b: 0.0, beta: 0.01, e: 0.0 }, "B = 0"),
        (Law::Additive { a: 0.5, alpha: 0.1, b: 0.2, beta: 0.01, e: -1.0 }, "E = -1"),
    ] {
        let e = law.check().unwrap_err();
        assert!(e.contains(name), "{law:?}: {e}");
    }
}
