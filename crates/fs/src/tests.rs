//! Unit tests of the atomic writer and the bounded reader.

use super::*;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-fs-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_replace_the_target_and_leave_no_temporary_file() {
    let d = scratch("replace");
    let target = d.join("out.npy");
    write_atomic(&target, b"first version, longer").unwrap();
    write_atomic(&target, b"second").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"second");
    assert_eq!(entries(&d), vec!["out.npy".to_string()]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_write_failing_half_way_keeps_the_old_file_and_removes_the_temporary_file() {
    let d = scratch("halfway");
    let target = d.join("m.kiln");
    write_atomic(&target, b"old contents").unwrap();
    let err = write_atomic_with(&target, |f| {
        f.write_all(b"new c")?;
        Err(io::Error::other("simulated disk full"))
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("writing temporary file "), "{msg}");
    assert!(msg.ends_with(": simulated disk full"), "{msg}");
    assert_eq!(fs::read(&target).unwrap(), b"old contents");
    assert_eq!(entries(&d), vec!["m.kiln".to_string()]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn temporary_names_are_hidden_siblings_with_a_random_suffix() {
    let a = temp_name(OsStr::new("y.npy")).into_string().unwrap();
    let b = temp_name(OsStr::new("y.npy")).into_string().unwrap();
    assert_ne!(a, b);
    for n in [&a, &b] {
        assert!(n.starts_with(".y.npy.") && n.ends_with(".tmp"), "{n}");
        let hex = &n[".y.npy.".len()..n.len() - ".tmp".len()];
        assert_eq!(hex.len(), 16, "{n}");
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{n}");
    }
}

/// A file already at a drawn temporary name is never opened: the writer draws the next
/// name, and the existing file keeps its contents.
#[test]
fn an_existing_file_at_a_temporary_name_is_never_opened() {
    let d = scratch("exists");
    let target = d.join("out.bin");
    fs::write(d.join("taken-0"), b"someone else's").unwrap();
    fs::write(d.join("taken-1"), b"someone else's too").unwrap();
    let mut n = 0;
    let mut names = |_: &OsStr| {
        n += 1;
        OsString::from(format!("taken-{}", n - 1))
    };
    write_atomic_named(&target, &mut names, |f| f.write_all(b"new")).unwrap();
    assert_eq!(n, 3);
    assert_eq!(fs::read(d.join("taken-0")).unwrap(), b"someone else's");
    assert_eq!(fs::read(d.join("taken-1")).unwrap(), b"someone else's too");
    assert_eq!(fs::read(&target).unwrap(), b"new");
    assert_eq!(entries(&d), vec!["out.bin", "taken-0", "taken-1"]);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_writer_gives_up_after_a_bounded_number_of_taken_names() {
    let d = scratch("giveup");
    let target = d.join("out.bin");
    fs::write(d.join("taken"), b"keep").unwrap();
    let mut n = 0;
    let mut names = |_: &OsStr| {
        n += 1;
        OsString::from("taken")
    };
    let err = write_atomic_named(&target, &mut names, |f| f.write_all(b"new")).unwrap_err();
    assert_eq!(n, TEMP_NAME_ATTEMPTS);
    assert_eq!(err.action, "creating temporary file");
    assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(d.join("taken")).unwrap(), b"keep");
    assert!(!target.exists());
    fs::remove_dir_all(&d).unwrap();
}

/// A symbolic link planted at a temporary name is not followed (exclusive create refuses
/// it), and a link at the target itself is replaced, not written through.
#[cfg(unix)]
#[test]
fn symbolic_links_are_never_written_through() {
    let d = scratch("symlink");
    let victim = d.join("victim");
    fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, d.join("planted")).unwrap();
    std::os::unix::fs::symlink(&victim, d.join("out.bin")).unwrap();
    let mut n = 0;
    let mut names = |_: &OsStr| {
        n += 1;
        OsString::from(if n == 1 { "planted" } else { "fresh" })
    };
    write_atomic_named(&d.join("out.bin"), &mut names, |f| f.write_all(b"new")).unwrap();
    assert_eq!(n, 2);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(
        !fs::symlink_metadata(d.join("out.bin"))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(fs::read(d.join("out.bin")).unwrap(), b"new");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn read_exact_len_reads_the_stated_size_and_nothing_more() {
    assert_eq!(read_exact_len(&mut &b"abcd"[..], 4).unwrap(), b"abcd");
    assert_eq!(
        read_exact_len(&mut &b"abc"[..], 4).unwrap_err().to_string(),
        "truncated: 4 bytes needed, 3 present"
    );
    assert_eq!(
        read_exact_len(&mut &b"abcde"[..], 4)
            .unwrap_err()
            .to_string(),
        "4 bytes expected, but more follow"
    );
    // An endless input costs the stated size plus one byte.
    let mut zeros = io::repeat(0).take(u64::MAX);
    assert_eq!(
        read_exact_len(&mut zeros, 1000).unwrap_err().to_string(),
        "1000 bytes expected, but more follow"
    );
    assert_eq!(zeros.limit(), u64::MAX - 1001);
}

#[test]
fn read_up_to_stops_at_the_end_of_the_input() {
    let mut buf = [0u8; 8];
    assert_eq!(read_up_to(&mut &b"abc"[..], &mut buf).unwrap(), 3);
    assert_eq!(read_up_to(&mut io::repeat(7), &mut buf).unwrap(), 8);
    assert_eq!(buf, [7; 8]);
}
