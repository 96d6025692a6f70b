//! The console's command line: the summary stays for scripts, and bad themes are refused
//! before the screen is touched, naming the file and the field.

mod common;

use common::*;

#[test]
fn without_a_terminal_the_default_is_still_the_summary() {
    let fx = Fixture::new();
    for args in [&[][..], &["summary"][..]] {
        let out = fx.cli(None, args);
        assert_ok(&out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("TENANT") && stdout.contains("acme"),
            "{}",
            text(&out)
        );
        assert!(stdout.contains("needs a backfill"), "{}", text(&out));
    }
}

#[test]
fn a_bad_theme_file_is_refused_with_its_name_and_field() {
    let fx = Fixture::new();
    let theme = fx.dir.path().join("mine.toml");
    std::fs::write(&theme, "[colors]\nerror = \"reddish\"\n").unwrap();
    let out = fx.cli(None, &["console", "--theme", theme.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mine.toml: colors.error: 'reddish' is not a colour"),
        "{stderr}"
    );

    std::fs::write(&theme, "[colours]\nerror = \"red\"\n").unwrap();
    let out = fx.cli(None, &["console", "--theme", theme.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mine.toml") && stderr.contains("colours"),
        "{stderr}"
    );

    let out = fx.cli(None, &["console", "--theme", "sepia"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown theme 'sepia'"), "{stderr}");
}

#[test]
fn a_partial_theme_in_the_workspace_is_accepted() {
    let fx = Fixture::new();
    let dir = fx.workspace().join("themes");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mine.toml"), "[colors]\nerror = \"#ff0000\"\n").unwrap();
    // Without a terminal the console cannot start, but only after the theme was read.
    let out = fx.cli(None, &["console", "--theme", "mine"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("theme"), "{stderr}");
    assert!(stderr.contains("the console needs a terminal"), "{stderr}");
}
