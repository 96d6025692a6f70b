//! Asking for what a flag did not give, on a terminal only: with stdin not a terminal a
//! missing value is an error naming its flag, so nothing ever waits for an answer.

use std::io::{BufRead, IsTerminal, Write};

use color_eyre::eyre::{Result, bail};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use super::Field;

pub struct Asker {
    terminal: bool,
}

impl Asker {
    pub fn new() -> Self {
        Asker {
            terminal: std::io::stdin().is_terminal(),
        }
    }

    /// The flag's value, else the answer to `question` on a terminal (not echoed when
    /// `secret`), else an error naming the flag.
    pub fn value(
        &mut self,
        given: Option<String>,
        flag: &str,
        question: &str,
        secret: bool,
    ) -> Result<String> {
        if let Some(v) = given.filter(|v| !v.trim().is_empty()) {
            return Ok(v.trim().to_string());
        }
        if !self.terminal {
            bail!("{flag} is required (stdin is not a terminal, so it is not asked)");
        }
        loop {
            let answer = self.read(question, secret)?;
            if !answer.is_empty() {
                return Ok(answer);
            }
        }
    }

    /// A credential field the flags did not give: asked on a terminal (Enter skips an
    /// optional one); without one, a required field is an error naming the flag and field.
    pub fn field(
        &mut self,
        flag: &str,
        f: &Field,
        question: &str,
        secret: bool,
    ) -> Result<Option<String>> {
        if !self.terminal {
            if f.required {
                bail!(
                    "{flag} {}=… is required (stdin is not a terminal, so it is not asked)",
                    f.name
                );
            }
            return Ok(None);
        }
        if f.required {
            return self.value(None, flag, question, secret).map(Some);
        }
        let answer = self.read(question, secret)?;
        Ok((!answer.is_empty()).then_some(answer))
    }

    /// Whether credentials should be environment variable names rather than a file.
    pub fn prefers_env(&mut self) -> Result<bool> {
        if !self.terminal {
            return Ok(false);
        }
        let answer = self.read(
            "Credentials in (f)ile, mode 0600, or (e)nvironment variables? [f]",
            false,
        )?;
        Ok(answer.to_ascii_lowercase().starts_with('e'))
    }

    fn read(&mut self, question: &str, secret: bool) -> Result<String> {
        eprint!("{question}: ");
        std::io::stderr().flush()?;
        if secret {
            return read_hidden();
        }
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            bail!("no answer to '{question}' (end of input)");
        }
        Ok(line.trim().to_string())
    }
}

/// A line typed with echo off (raw mode), so a secret never shows on the screen.
fn read_hidden() -> Result<String> {
    crossterm::terminal::enable_raw_mode()?;
    let mut text = String::new();
    let outcome = loop {
        match event::read() {
            Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    break Err("interrupted");
                }
                KeyCode::Char(c) => text.push(c),
                KeyCode::Backspace => {
                    text.pop();
                }
                _ => {}
            },
            Ok(_) => {}
            Err(_) => break Err("the terminal could not be read"),
        }
    };
    crossterm::terminal::disable_raw_mode()?;
    eprintln!();
    match outcome {
        Ok(()) => Ok(text.trim().to_string()),
        Err(why) => bail!("{why}"),
    }
}
