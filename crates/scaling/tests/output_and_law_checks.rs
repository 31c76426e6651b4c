//! Atomic output onto an existing folder fails before writing anything.
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
