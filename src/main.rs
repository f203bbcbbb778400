//! The `portico` binary: parses the command line and turns errors into exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portico::cli;

/// A reverse proxy and load balancer for clustered Java application servers.
#[derive(Parser, Debug)]
#[command(name = "portico", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a configuration in the foreground.
    Run(cli::run::RunArgs),
    /// Validate a configuration (like `nginx -t`): prints `ok` or every error.
    Check(cli::check::CheckArgs),
    /// Write a self-signed certificate and key (replaces the openssl steps).
    Cert(cli::cert::CertArgs),
    /// Try portico: the quickstart config with two built-in backend nodes.
    Demo(cli::demo::DemoArgs),
    /// Translate an nginx configuration into portico TOML on stdout; notes on stderr.
    ImportNginx(cli::import_nginx::ImportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match &cli.command {
        Command::Run(args) => cli::run::run(args).map_err(Into::into),
        Command::Demo(args) => cli::demo::run(args).map_err(Into::into),
        Command::ImportNginx(args) => {
            cli::import_nginx::run(args, &mut std::io::stdout(), &mut std::io::stderr()).map_err(Into::into)
        }
        Command::Cert(args) => cli::cert::run(args, &mut std::io::stdout()).map_err(Into::into),
        Command::Check(args) => {
            return match cli::check::run(args, &mut std::io::stdout()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("portico: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portico: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and the causes its message does not already name. portico's
/// errors mostly spell out their cause (`cannot write the pid file P: No such
/// file or directory`), so printing the whole chain would say it twice.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
