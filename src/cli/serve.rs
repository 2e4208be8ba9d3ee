//! The server flags `demo` and `replay` share: where to listen, the
//! token, and the refusal to serve a public address without one.

use agentgate_obs::{Builder, Observability};
use clap::Args;

use super::Usage;
use super::token::{Token, TokenArgs};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address of the HTTP server (port 0: a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Require a bearer token on every route but /health (also
    /// --token-file or AGENTGATE_TOKEN).
    #[command(flatten)]
    token: TokenArgs,
    /// Allow --listen on an address other than loopback without a token
    /// (anyone who can reach it then reads every run and the metrics).
    #[arg(long)]
    allow_public: bool,
}

impl ServeArgs {
    /// A builder serving on `--listen` with the token, if any (which is
    /// returned too, for the URLs to print). Refuses an address that does
    /// not resolve (a usage error, where failing to bind a real one is
    /// not), and a public address without a token unless `--allow-public`.
    pub(crate) fn builder(&self) -> Result<(Builder, Option<Token>), Usage> {
        let (token, note) = self.token.resolve()?;
        if let Some(note) = note {
            eprintln!("agentgate-obs: note: {note}");
        }
        check_address(&self.listen)?;
        check_public(&self.listen, token.is_some(), self.allow_public)?;
        let mut builder = Observability::builder().serve(self.listen.as_str());
        if let Some(token) = &token {
            builder = builder.token(token.value.as_str());
        }
        Ok((builder, token))
    }
}

/// Refuses a `listen` that names no socket address.
fn check_address(listen: &str) -> Result<(), Usage> {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Usage(format!("--listen {listen}: resolves to no address"))),
        Err(e) => Err(Usage(format!(
            "--listen {listen}: not an address to listen on (HOST:PORT, e.g. 127.0.0.1:3000): {e}"
        ))),
    }
}

/// Refuses a public `listen` without a token unless `allow_public`, and
/// warns when it is allowed.
fn check_public(listen: &str, has_token: bool, allow_public: bool) -> Result<(), Usage> {
    if has_token || is_loopback(listen) {
        return Ok(());
    }
    if !allow_public {
        return Err(Usage(format!(
            "refusing to serve {listen} without a token: anyone who can reach it could read \
             every run and the metrics. Give a token (--token-file, AGENTGATE_TOKEN or \
             --token), listen on 127.0.0.1, or pass --allow-public"
        )));
    }
    eprintln!(
        "agentgate-obs: WARNING: serving {listen} without a token (--allow-public): \
         anyone who can reach it can read every run and the metrics"
    );
    Ok(())
}

/// Whether `listen` names only loopback addresses (`check_address` has
/// refused one that does not resolve).
fn is_loopback(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs() {
        Ok(addrs) => addrs.into_iter().all(|a| match a.ip() {
            std::net::IpAddr::V6(v6) => v6.to_canonical().is_loopback(),
            ip => ip.is_loopback(),
        }),
        Err(_) => true,
    }
}
