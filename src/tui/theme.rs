//! Colours by role (ok, warn, error, muted, accent...): built-in themes compiled into the
//! binary, user theme files that may name only some roles, and `NO_COLOR`.
//!
//! A user file is laid over the default theme, so a partial file is complete. Errors name
//! the file and the field, as configuration errors do elsewhere.

use std::path::{Path, PathBuf};

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// The themes compiled into the binary: name and TOML text. The first is the default.
pub const BUILT_IN: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThemeError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error(
        "{file}: colors.{field}: '{value}' is not a colour (use a name like red or light-blue, #rrggbb, an index 0-255, or reset)"
    )]
    BadColor {
        file: String,
        field: String,
        value: String,
    },
    #[error("cannot read theme {file}: {message}")]
    Read { file: String, message: String },
    #[error(
        "unknown theme '{0}' (built in: dark, light, high-contrast; or a path to a .toml file)"
    )]
    Unknown(String),
}

macro_rules! roles {
    ($($role:ident),+ $(,)?) => {
        /// A theme: one colour per role. Views ask for roles, never for colours.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Theme {
            pub name: String,
            /// False under `NO_COLOR`: selection and matches use reverse video instead.
            pub color: bool,
            $(pub $role: Color,)+
        }

        #[derive(Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct ColorsFile {
            $(#[serde(default)] $role: Option<String>,)+
        }

        impl Theme {
            /// Every role name, as theme files spell them.
            pub const ROLES: &'static [&'static str] = &[$(stringify!($role)),+];

            fn overlay(mut self, file: &str, colors: ColorsFile) -> Result<Theme, ThemeError> {
                $(
                    if let Some(value) = colors.$role {
                        self.$role = value.parse::<Color>().map_err(|_| ThemeError::BadColor {
                            file: file.to_string(),
                            field: stringify!($role).to_string(),
                            value: value.clone(),
                        })?;
                    }
                )+
                Ok(self)
            }

            /// Every role reset to the terminal's own colours (`NO_COLOR`).
            pub fn no_color(&self) -> Theme {
                Theme {
                    name: self.name.clone(),
                    color: false,
                    $($role: Color::Reset,)+
                }
            }
        }
    };
}

roles!(
    fg,
    bg,
    muted,
    accent,
    ok,
    warn,
    error,
    info,
    running,
    border,
    title,
    header_fg,
    header_bg,
    selection_fg,
    selection_bg,
    mark,
    match_fg,
    match_bg,
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    colors: ColorsFile,
}

impl Default for Theme {
    fn default() -> Self {
        Theme::built_in("dark").expect("the built-in dark theme is valid")
    }
}

impl Theme {
    /// The colours every role has before a file says otherwise.
    fn base() -> Theme {
        Theme {
            name: "base".into(),
            color: true,
            fg: Color::Reset,
            bg: Color::Reset,
            muted: Color::DarkGray,
            accent: Color::Cyan,
            ok: Color::Green,
            warn: Color::Yellow,
            error: Color::LightRed,
            info: Color::LightBlue,
            running: Color::LightCyan,
            border: Color::DarkGray,
            title: Color::LightCyan,
            header_fg: Color::Black,
            header_bg: Color::Cyan,
            selection_fg: Color::Black,
            selection_bg: Color::LightBlue,
            mark: Color::Magenta,
            match_fg: Color::Black,
            match_bg: Color::Yellow,
        }
    }

    /// Parses theme text laid over `under`; `file` names it in errors.
    pub fn parse(file: &str, text: &str, under: Theme) -> Result<Theme, ThemeError> {
        let parsed: ThemeFile = toml::from_str(text).map_err(|e| ThemeError::Parse {
            file: file.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let mut theme = under.overlay(file, parsed.colors)?;
        theme.name = parsed.name.unwrap_or_else(|| {
            Path::new(file)
                .file_stem()
                .map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned())
        });
        Ok(theme)
    }

    pub fn built_in(name: &str) -> Option<Theme> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name)?;
        Theme::parse(&format!("themes/{name}.toml"), text, Theme::base()).ok()
    }

    pub fn names() -> Vec<&'static str> {
        BUILT_IN.iter().map(|(n, _)| *n).collect()
    }

    /// A built-in name, or a `.toml` file laid over the default theme. This reads a file:
    /// the console calls it at start and from an effect, never while drawing.
    pub fn load(spec: &str, dir: Option<&Path>) -> Result<Theme, ThemeError> {
        let path_like = spec.ends_with(".toml") || spec.contains('/');
        if !path_like {
            let in_dir = dir.map(|d| d.join(format!("{spec}.toml")));
            match in_dir.filter(|p| p.is_file()) {
                Some(p) => return Theme::load_file(&p),
                None => {
                    return Theme::built_in(spec).ok_or_else(|| ThemeError::Unknown(spec.into()));
                }
            }
        }
        Theme::load_file(&PathBuf::from(spec))
    }

    pub fn load_file(path: &Path) -> Result<Theme, ThemeError> {
        let file = path.display().to_string();
        let text = crate::config::read_small_file(path, crate::config::MAX_CONFIG_FILE_BYTES)
            .map_err(|e| ThemeError::Read {
                file: file.clone(),
                message: e.to_string(),
            })?;
        Theme::parse(&file, &text, Theme::default())
    }

    pub fn fg(&self, color: Color) -> Style {
        Style::new().fg(color)
    }

    pub fn text(&self) -> Style {
        Style::new().fg(self.fg).bg(self.bg)
    }

    pub fn selection(&self) -> Style {
        if self.color {
            Style::new().fg(self.selection_fg).bg(self.selection_bg)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    pub fn header(&self) -> Style {
        if self.color {
            Style::new().fg(self.header_fg).bg(self.header_bg)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    pub fn highlight(&self) -> Style {
        if self.color {
            Style::new().fg(self.match_fg).bg(self.match_bg)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::UNDERLINED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_themes_name_every_role() {
        for (name, text) in BUILT_IN {
            let table: toml::Table = toml::from_str(text).unwrap();
            let colors = table["colors"].as_table().unwrap();
            for role in Theme::ROLES {
                assert!(colors.contains_key(*role), "{name} lacks {role}");
            }
            assert_eq!(Theme::built_in(name).unwrap().name, name);
        }
    }

    #[test]
    fn a_partial_file_keeps_the_default_for_missing_roles() {
        let t = Theme::parse(
            "mine.toml",
            "[colors]\nerror = \"#ff0000\"\n",
            Theme::default(),
        )
        .unwrap();
        assert_eq!(t.error, Color::Rgb(255, 0, 0));
        assert_eq!(t.ok, Theme::default().ok);
        assert_eq!(t.name, "mine");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let bad = Theme::parse(
            "x.toml",
            "[colors]\nerror = \"reddish\"\n",
            Theme::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.starts_with("x.toml: colors.error: 'reddish'"), "{bad}");
        let unknown = Theme::parse("y.toml", "[colors]\neror = \"red\"\n", Theme::default())
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with("y.toml:") && unknown.contains("eror"),
            "{unknown}"
        );
        let syntax = Theme::parse("z.toml", "[colors\n", Theme::default())
            .unwrap_err()
            .to_string();
        assert!(syntax.starts_with("z.toml:"), "{syntax}");
        assert!(matches!(
            Theme::load("nope", None),
            Err(ThemeError::Unknown(_))
        ));
    }

    type Rgb = (u8, u8, u8);

    /// xterm's default palette: what a named colour looks like on most terminals.
    fn rgb(c: Color, reset: Rgb) -> Rgb {
        match c {
            Color::Reset => reset,
            Color::Black => (0, 0, 0),
            Color::Red => (205, 0, 0),
            Color::Green => (0, 205, 0),
            Color::Yellow => (205, 205, 0),
            Color::Blue => (0, 0, 238),
            Color::Magenta => (205, 0, 205),
            Color::Cyan => (0, 205, 205),
            Color::Gray => (229, 229, 229),
            Color::DarkGray => (127, 127, 127),
            Color::LightRed => (255, 0, 0),
            Color::LightGreen => (0, 255, 0),
            Color::LightYellow => (255, 255, 0),
            Color::LightBlue => (92, 92, 255),
            Color::LightMagenta => (255, 0, 255),
            Color::LightCyan => (0, 255, 255),
            Color::White => (255, 255, 255),
            Color::Rgb(r, g, b) => (r, g, b),
            Color::Indexed(i) => panic!("indexed colour {i}: give it as #rrggbb"),
        }
    }

    /// WCAG 2 relative luminance.
    fn luminance((r, g, b): Rgb) -> f64 {
        let lin = |v: u8| {
            let c = f64::from(v) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
    }

    fn contrast(a: Rgb, b: Rgb) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    /// Every role of every built-in theme is readable: 4.5:1 (WCAG AA for text) against the
    /// background it is drawn on, the terminal's own (white for `light`, black otherwise)
    /// where the theme says `reset`.
    #[test]
    fn every_role_meets_wcag_contrast() {
        const WHITE: Rgb = (255, 255, 255);
        const BLACK: Rgb = (0, 0, 0);
        for name in Theme::names() {
            let t = Theme::built_in(name).unwrap();
            let (term_bg, term_fg) = if name == "light" {
                (WHITE, BLACK)
            } else {
                (BLACK, (229, 229, 229))
            };
            let bg = rgb(t.bg, term_bg);
            let on_bg = [
                ("fg", t.fg),
                ("muted", t.muted),
                ("accent", t.accent),
                ("ok", t.ok),
                ("warn", t.warn),
                ("error", t.error),
                ("info", t.info),
                ("running", t.running),
                ("border", t.border),
                ("title", t.title),
                ("mark", t.mark),
            ];
            let mut pairs: Vec<(&str, Rgb, Rgb)> = on_bg
                .iter()
                .map(|(role, c)| (*role, rgb(*c, term_fg), bg))
                .collect();
            pairs.push((
                "header_fg on header_bg",
                rgb(t.header_fg, term_fg),
                rgb(t.header_bg, bg),
            ));
            pairs.push((
                "selection_fg on selection_bg",
                rgb(t.selection_fg, term_fg),
                rgb(t.selection_bg, bg),
            ));
            pairs.push((
                "match_fg on match_bg",
                rgb(t.match_fg, term_fg),
                rgb(t.match_bg, bg),
            ));
            for (role, fg, bg) in pairs {
                let ratio = contrast(fg, bg);
                assert!(ratio >= 4.5, "{name}: {role} is {ratio:.2}:1, under 4.5:1");
            }
        }
    }

    #[test]
    fn no_color_resets_every_role() {
        let t = Theme::default().no_color();
        assert!(!t.color);
        assert_eq!(t.error, Color::Reset);
        assert!(t.selection().add_modifier.contains(Modifier::REVERSED));
    }
}
