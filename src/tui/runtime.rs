//! The console's event loop: turns key presses, engine events, snapshots, log lines and
//! clock ticks into messages, runs `update`, carries out its effects on tasks, and redraws
//! only when the model says something changed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};

use super::app::{App, CloudMode};
use super::logs::LogFeed;
use super::terminal;
use super::theme::Theme;
use super::update::{Effect, Msg, update};
use super::views;
use crate::engine::EngineHandle;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

pub struct ConsoleOptions {
    pub read_only: bool,
    pub theme: Theme,
    /// Where `:theme NAME` looks for `NAME.toml` before the built-in themes.
    pub themes_dir: Option<PathBuf>,
    /// Log lines kept in memory.
    pub log_capacity: usize,
    /// Local jobs, or the cloud deployment's (the handle and the log feed must agree).
    pub cloud: CloudMode,
}

/// Messages waiting for the loop; producers wait when it is full instead of piling up.
const QUEUE: usize = 256;
/// The shortest time between two frames (about 30 per second at most).
const FRAME: Duration = Duration::from_millis(33);

/// Runs the console until `:quit` or Ctrl-C.
pub async fn run(
    handle: EngineHandle,
    mut logs: LogFeed,
    options: ConsoleOptions,
) -> Result<(), ConsoleError> {
    let logs_name = logs.name();
    let per_job = logs.is_per_job();
    let (mut term, _guard) = terminal::enter()?;
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    let mut tasks = Vec::new();

    // Keys and resizes.
    let keys = tx.clone();
    tasks.push(tokio::spawn(async move {
        let mut input = EventStream::new();
        while let Some(Ok(ev)) = input.next().await {
            let msg = match ev {
                Event::Key(k) if k.kind != KeyEventKind::Release => Msg::Key(k),
                Event::Resize(width, height) => Msg::Resize { width, height },
                _ => continue,
            };
            if keys.send(msg).await.is_err() {
                return;
            }
        }
    }));
    // Snapshots.
    let snaps = tx.clone();
    let mut watch = handle.snapshot();
    tasks.push(tokio::spawn(async move {
        loop {
            let snap = watch.borrow_and_update().clone();
            if snaps.send(Msg::Snapshot(snap)).await.is_err() {
                return;
            }
            if watch.changed().await.is_err() {
                return;
            }
        }
    }));
    // Engine events: a lagging receiver skips some; the snapshot still tells the truth.
    let events = tx.clone();
    let mut sub = handle.subscribe();
    tasks.push(tokio::spawn(async move {
        loop {
            match sub.recv().await {
                Ok(event) => {
                    if events
                        .send(Msg::Engine {
                            event,
                            at: Utc::now(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }));
    // Log lines. The job the pane is filtered to comes from the model after each update: a
    // feed read per job (CloudWatch) reads that one.
    let (focus_tx, mut focus) = watch::channel(None::<String>);
    let lines = tx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            if focus.has_changed().unwrap_or(false) {
                logs.focus(focus.borrow_and_update().as_deref());
            }
            let msg = match logs.poll().await {
                Ok(batch) if batch.is_empty() => None,
                Ok(batch) => Some(Msg::Logs(batch)),
                Err(e) => Some(Msg::LogError(e.to_string())),
            };
            let more = matches!(&msg, Some(Msg::Logs(_)));
            if let Some(m) = msg
                && lines.send(m).await.is_err()
            {
                return;
            }
            // A batch means more may be waiting: read on without a pause. A new focus is
            // read at once.
            if !more {
                tokio::select! {
                    _ = tokio::time::sleep(logs.poll_every()) => {}
                    changed = focus.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let job = focus.borrow_and_update().clone();
                        logs.focus(job.as_deref());
                    }
                }
            }
        }
    }));
    // The clock, for rates, ETAs and fading messages.
    let ticks = tx.clone();
    tasks.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            if ticks.send(Msg::Tick(Utc::now())).await.is_err() {
                return;
            }
        }
    }));

    let mut app = App::new(options.theme, options.read_only, Utc::now());
    app.cloud = options.cloud;
    app.logs = super::logs::LogPane::new(options.log_capacity);
    app.logs.source_name = logs_name;
    app.logs.per_job = per_job;
    let size = term.size()?;
    update(
        &mut app,
        Msg::Resize {
            width: size.width,
            height: size.height,
        },
    );
    let themes_dir = options.themes_dir;
    let mut last_draw = Instant::now()
        .checked_sub(FRAME)
        .unwrap_or_else(Instant::now);
    'run: loop {
        // With a change waiting to be drawn, wait for more only until the next frame is due.
        let first = if app.dirty {
            match tokio::time::timeout(FRAME.saturating_sub(last_draw.elapsed()), rx.recv()).await {
                Ok(Some(msg)) => Some(msg),
                Ok(None) => break,
                Err(_) => None,
            }
        } else {
            match rx.recv().await {
                Some(msg) => Some(msg),
                None => break,
            }
        };
        let mut effects = match first {
            Some(msg) => update(&mut app, msg),
            None => Vec::new(),
        };
        // Take whatever else is waiting before drawing once.
        for _ in 0..QUEUE {
            match rx.try_recv() {
                Ok(msg) => effects.extend(update(&mut app, msg)),
                Err(_) => break,
            }
        }
        for effect in effects {
            match effect {
                Effect::Quit => break 'run,
                Effect::Engine(command) => {
                    let (handle, tx) = (handle.clone(), tx.clone());
                    tokio::spawn(async move {
                        let result = handle
                            .send(command.clone())
                            .await
                            .map_err(|e| e.to_string());
                        let _ = tx.send(Msg::Done { command, result }).await;
                    });
                }
                Effect::Preview {
                    generation,
                    request,
                } => {
                    let (handle, tx) = (handle.clone(), tx.clone());
                    tokio::spawn(async move {
                        let result = handle.preview(&request, Utc::now());
                        let _ = tx.send(Msg::Preview { generation, result }).await;
                    });
                }
                Effect::LoadTheme(name) => {
                    let (dir, tx) = (themes_dir.clone(), tx.clone());
                    tokio::spawn(async move {
                        let result = tokio::task::spawn_blocking(move || {
                            Theme::load(&name, dir.as_deref()).map_err(|e| e.to_string())
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                        let _ = tx.send(Msg::Theme(result)).await;
                    });
                }
            }
        }
        if app.quit {
            break;
        }
        let job = app.logs.chunk.as_ref().map(|c| c.job_id.clone());
        if *focus_tx.borrow() != job {
            focus_tx.send_replace(job);
        }
        // At most one frame per FRAME: a burst of events costs one draw, not hundreds.
        if app.dirty && last_draw.elapsed() >= FRAME {
            term.draw(|f| views::render(f, &app))?;
            app.dirty = false;
            last_draw = Instant::now();
        }
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}
