//! The console's command line: the summary stays for scripts, and bad themes and keys files
//! are refused before the screen is touched, naming the file and the field.

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

#[test]
fn a_bad_keys_file_stops_the_console_naming_the_file_line_and_key() {
    let fx = Fixture::new();
    let keys = fx.config_dir().join("keys.toml");
    let cases = [
        (
            "[bindings]\ncancel = \"x\"\nmark = \"x\"\n",
            "keys.toml: \"x\" is bound to both mark and cancel in the jobs view",
        ),
        (
            "[bindings]\n\nfrobnicate = \"z\"\n",
            "keys.toml line 3: bindings.frobnicate: unknown action \"frobnicate\"",
        ),
        (
            "[bindings]\ncancel = \"hyper-x\"\n",
            "keys.toml line 2: bindings.cancel: cannot read the key \"hyper-x\"",
        ),
        (
            "[bindings]\nmark = \"esc\"\n",
            "bindings.mark: \"esc\" is kept for back",
        ),
    ];
    for (body, needle) in cases {
        std::fs::write(&keys, body).unwrap();
        // Refused before the terminal is looked at: not "needs a terminal".
        let out = fx.cli(None, &["console"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{stderr}");
        assert!(stderr.contains(&keys.display().to_string()), "{stderr}");
        assert!(!stderr.contains("needs a terminal"), "{stderr}");
        // `keys` refuses it the same way, and `keys --check` too.
        for args in [
            &["keys"][..],
            &["keys", "--check", keys.to_str().unwrap()][..],
        ] {
            let out = fx.cli(None, args);
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(String::from_utf8_lossy(&out.stderr).contains(needle));
        }
    }
}

/// `keys` succeeds, its first line is `mouse`, and the retry_failed row holds `retry_keys`.
fn keys_say(fx: &Fixture, mouse: &str, retry_keys: &str) {
    let out = fx.cli(None, &["keys"]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().next(), Some(mouse), "{stdout}");
    let retry = stdout
        .lines()
        .find(|l| l.starts_with("retry_failed "))
        .unwrap();
    assert!(retry.contains(retry_keys), "{retry}");
}

#[test]
fn keys_prints_the_keymap_in_effect() {
    let fx = Fixture::new();
    keys_say(&fx, "mouse = false", " R ");
    let keys = fx.config_dir().join("keys.toml");
    std::fs::write(
        &keys,
        "mouse = true\n[bindings]\nretry_failed = [\"F\", \"ctrl-r\"]\n",
    )
    .unwrap();
    keys_say(&fx, "mouse = true", " F ctrl-r ");
    let out = fx.cli(None, &["keys", "--check", keys.to_str().unwrap()]);
    assert_ok(&out);
    // The console reads it and only then finds no terminal.
    let out = fx.cli(None, &["console", "--mouse"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the console needs a terminal"), "{stderr}");
}
