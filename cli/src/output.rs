//! Writing to stdout. A reader that goes away early (`ferry schema | head`) ends the command
//! quietly with exit code 0, as with other Unix tools, instead of a panic: Rust ignores
//! SIGPIPE, so the write fails with `BrokenPipe`, which is handled here.

use std::io::Write;

/// Writes one line to stdout (see [`outln!`](crate::outln)).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        failed(&e);
    }
}

/// Writes text to stdout as it is.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        failed(&e);
    }
    Ok(())
}

/// A closed pipe ends the command quietly; any other write error ends it with a message.
fn failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// `println!` for command output: a closed pipe ends the command quietly.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
