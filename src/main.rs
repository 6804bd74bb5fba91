use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = paywait::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paywait: cannot start the async runtime: {error}");
            return ExitCode::from(71);
        }
    };
    match runtime.block_on(paywait::commands::execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("paywait: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
