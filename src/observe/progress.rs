//! Progress of long commands (replay, train, bench) on standard error: a line redrawn in
//! place at most four times a second on a terminal, a plain line every five seconds
//! otherwise (CI logs), nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    tty: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet,
            tty: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// Shows `line()` if it is time to; the line is only built then.
    pub fn update(&mut self, line: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < every) {
            return;
        }
        if self.last.is_none() && !self.tty {
            // the first line only after a while: short runs stay quiet in logs
            self.last = Some(now);
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{}", line());
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{}", line());
        }
        let _ = err.flush();
    }

    /// Shows the final state (always, unless quiet) and ends the line.
    pub fn finish_with(&mut self, line: String) {
        if self.enabled {
            self.finish();
            eprintln!("{line}");
        }
    }

    /// Clears the redrawn line, so that what follows starts on a fresh one.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}
