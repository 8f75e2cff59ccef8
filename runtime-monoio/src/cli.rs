//! Command-line flags: parsing (argh), validation, and the [`Settings`] the rest of the binary
//! runs on.
//!
//! Failure: a bad value is reported as one line naming the flag (`ringway: --threads: ...`)
//! and exit status 2; `--help` and `--version` print to stdout and exit 0. argh's own
//! `from_env` exits 1 on errors, so [`parse`] maps argh's `EarlyExit` itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use argh::FromArgs;
use ringway_core::{Cidr, Config, ParentProxy, Policy, PortRule, MAX_HEADER_SLOTS};

pub use crate::access_log::Format as AccessLogFormat;
use crate::config_file;

/// Ringway: an HTTP/HTTPS forward proxy (plain HTTP forwarding and CONNECT tunnels).
///
/// With no flags it listens on 127.0.0.1:3128, admits loopback clients only and allows
/// CONNECT to port 443 only. Durations take a unit: 500ms, 10s, 5m, 1h.
/// `ringway ca-init --dir DIR [--force]` makes an interception CA and exits.
#[derive(FromArgs, Debug)]
struct Args {
    /// address to listen on, e.g. 127.0.0.1:3128 or [::1]:8080; repeatable; port 0 picks a
    /// free port (the start-up line shows it) [default: 127.0.0.1:3128; none when
    /// --tls-listen is given]
    #[argh(option)]
    listen: Vec<SocketAddr>,

    /// worker threads, one event loop each [default: number of CPU cores]
    #[argh(option)]
    threads: Option<usize>,

    /// IO driver: auto (io_uring when the kernel allows it, else epoll), uring, or epoll
    /// [default: auto]
    #[argh(option, default = "DriverChoice::Auto")]
    driver: DriverChoice,

    /// ports CONNECT may reach: a comma-separated list such as 443,8443, or `any`
    /// [default: 443]
    #[argh(option)]
    connect_ports: Option<PortRule>,

    /// client network allowed to use the proxy, e.g. 10.0.0.0/8 or ::1; repeatable
    /// [default: 127.0.0.0/8 and ::1 only]
    #[argh(option)]
    allow_client: Vec<Cidr>,

    /// destination network allowed although the built-in guard refuses it (loopback,
    /// private, link-local, ...), e.g. 127.0.0.0/8 or ::1/128; repeatable; the longer prefix
    /// wins against --deny-range, deny wins a tie [default: none]
    #[argh(option)]
    allow_range: Vec<Cidr>,

    /// destination network refused as well, e.g. 203.0.113.0/24; repeatable [default: none]
    #[argh(option)]
    deny_range: Vec<Cidr>,

    /// allow private (10/8, 172.16/12, 192.168/16, fc00::/7) and shared (100.64/10)
    /// destinations; loopback, link-local and the rest stay refused
    #[argh(switch)]
    allow_private: bool,

    /// only destinations matching these host patterns may be reached (example.com,
    /// *.example.com for subdomains, * for all, a CIDR for IP literals, @FILE for a list);
    /// repeatable [default: every host]
    #[argh(option)]
    allow_domain: Vec<String>,

    /// destinations matching these host patterns are refused, before any DNS lookup (same
    /// grammar as --allow-domain; deny beats allow); repeatable [default: none]
    #[argh(option)]
    deny_domain: Vec<String>,

    /// send requests on through this parent proxy: http://[user:password@]host:port
    /// (credentials percent-encoded; sent as Proxy-Authorization: Basic); the egress policy
    /// still applies first [default: none, straight to the origin]
    #[argh(option)]
    upstream_proxy: Option<String>,

    /// destinations that go direct instead of through --upstream-proxy (host patterns as
    /// for --allow-domain, CIDRs for IP literals, @FILE); repeatable; no implicit
    /// exceptions, not even localhost [default: none]
    #[argh(option)]
    no_upstream_proxy: Vec<String>,

    /// the name in our Via entries, and the one whose presence in a request means a loop;
    /// chained Ringways need different names (a token) [default: ringway]
    #[argh(option)]
    via_name: Option<String>,

    /// intercept HTTPS (CONNECT) to hosts matching these patterns (grammar of
    /// --allow-domain): TLS is terminated with a certificate minted from --ca-cert and the
    /// requests inside are proxied and logged like plain HTTP; repeatable [default: none]
    #[argh(option)]
    intercept: Vec<String>,

    /// the interception CA certificate (PEM), e.g. from `ringway ca-init`; with --ca-key
    #[argh(option)]
    ca_cert: Option<PathBuf>,

    /// the interception CA's private key (PEM); it must match --ca-cert
    #[argh(option)]
    ca_key: Option<PathBuf>,

    /// extra trust anchors (PEM) for intercepted origins, on top of the system roots
    /// (SSL_CERT_FILE or the distribution's bundle); repeatable [default: none]
    #[argh(option)]
    upstream_ca: Vec<PathBuf>,

    /// do not verify intercepted origins' certificates at all (dangerous: for test rigs)
    #[argh(switch)]
    insecure_upstream: bool,

    /// most minted leaf certificates kept, one per intercepted host [default: 10000]
    #[argh(option)]
    cert_cache: Option<usize>,

    /// append the TLS secrets of intercepted connections (and of --tls-listen clients) to
    /// this file in NSS key log format (for Wireshark); SSLKEYLOGFILE does the same
    /// [default: none]
    #[argh(option)]
    tls_key_log: Option<PathBuf>,

    /// serve proxy clients over TLS on this address (an HTTPS proxy: curl -x https://ADDR,
    /// Chromium --proxy-server=https://ADDR), like --listen otherwise (without --listen, the
    /// only listener); needs --tls-cert and --tls-key; repeatable [default: none]
    #[argh(option)]
    tls_listen: Vec<SocketAddr>,

    /// the certificate chain (PEM) the --tls-listen listener presents; read again on SIGHUP
    #[argh(option)]
    tls_cert: Option<PathBuf>,

    /// the private key (PEM: PKCS#8, SEC1 or PKCS#1) of --tls-cert; it must match; read
    /// again on SIGHUP
    #[argh(option)]
    tls_key: Option<PathBuf>,

    /// where access-log lines go: `stdout`, `off`, or a file path to append to
    /// [default: stdout]
    #[argh(option, default = "AccessLogTarget::Stdout")]
    access_log: AccessLogTarget,

    /// access-log line format: `text` (timestamp, client, method, target, status, rx, tx,
    /// duration) or `json` (one object a line) [default: text]
    #[argh(option, default = "AccessLogFormat::Text")]
    access_log_format: AccessLogFormat,

    /// serve Prometheus metrics (GET /metrics) and health checks (/healthz, /readyz) on this
    /// address, e.g. 127.0.0.1:9090; not proxied, not logged [default: off]
    #[argh(option)]
    metrics_listen: Option<SocketAddr>,

    /// how long the connection attempts to an upstream may take, all together (addresses
    /// are raced, Happy Eyeballs), before the client gets 504 [default: 10s]
    #[argh(option, from_str_fn(parse_duration))]
    connect_timeout: Option<Duration>,

    /// how long a DNS lookup may take before the client gets 504 (error=dns_timeout); a
    /// failed lookup is 502 (error=dns_error) and remembered for 1s [default: 5s]
    #[argh(option, from_str_fn(parse_duration))]
    dns_timeout: Option<Duration>,

    /// how long a client may take to send a complete request head [default: 30s]
    #[argh(option, from_str_fn(parse_duration))]
    header_timeout: Option<Duration>,

    /// how long an idle keep-alive client connection stays open between requests
    /// [default: 60s]
    #[argh(option, from_str_fn(parse_duration))]
    idle_timeout: Option<Duration>,

    /// how long a CONNECT tunnel may go without a byte either way [default: 5m]
    #[argh(option, from_str_fn(parse_duration))]
    tunnel_idle_timeout: Option<Duration>,

    /// how long an idle upstream connection is kept for reuse; 0s turns reuse off (use a
    /// value below your origins' keep-alive timeouts) [default: 30s]
    #[argh(option, from_str_fn(parse_duration))]
    pool_idle_timeout: Option<Duration>,

    /// how long SIGINT/SIGTERM waits for in-flight requests and tunnels before exiting;
    /// 0s exits at once [default: 10s]
    #[argh(option, from_str_fn(parse_duration))]
    shutdown_grace: Option<Duration>,

    /// most client connections open at once, over all threads; the next ones are answered
    /// 503 with Retry-After: 1 (and beyond N plus N more, at least 16 and at most 1024,
    /// closed on accept)
    /// [default: 8192]
    #[argh(option)]
    max_connections: Option<usize>,

    /// most client connections open at once from one client address, over all threads; the
    /// next one is answered 429 with Retry-After: 1; 0 means no limit [default: 0]
    #[argh(option)]
    max_connections_per_client: Option<usize>,

    /// most header fields in one request head (1 to 1024); more get 431, and a response
    /// with more gets 502 [default: 256]
    #[argh(option)]
    max_header_fields: Option<usize>,

    /// require Proxy-Authorization (Basic): a file of `user:password` lines (blank lines and
    /// lines starting with # are skipped); clients without valid credentials get 407
    /// [default: no authentication]
    #[argh(option)]
    auth_file: Option<std::path::PathBuf>,

    /// read settings from this TOML file: keys are the long flag names with _ for -
    /// (`connect_ports = "any"`), arrays repeat a flag, `true` sets a switch; a flag on the
    /// command line replaces the file's value (lists included) [default: no file]
    #[argh(option)]
    config: Option<PathBuf>,

    /// check the flags and the --config file, print the effective settings and exit: 0 if
    /// valid, 2 (with the error) if not
    #[argh(switch)]
    check_config: bool,

    /// print the version and exit
    #[argh(switch)]
    version: bool,
}

/// Which IO driver the user asked for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when `detect_uring()` says the kernel allows it, else epoll.
    Auto,
    /// io_uring, or fail at start-up.
    Uring,
    /// epoll (monoio's legacy driver); works where seccomp blocks io_uring.
    Epoll,
}

impl FromStr for DriverChoice {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DriverChoice::Auto),
            "uring" | "io_uring" => Ok(DriverChoice::Uring),
            "epoll" | "legacy" => Ok(DriverChoice::Epoll),
            _ => Err("expected auto, uring or epoll"),
        }
    }
}

/// Where access-log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Dropped.
    Off,
    /// Standard output, flushed after each line.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

impl FromStr for AccessLogTarget {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" => Err("expected off, stdout or a file path"),
            "off" => Ok(AccessLogTarget::Off),
            "stdout" | "-" => Ok(AccessLogTarget::Stdout),
            path => Ok(AccessLogTarget::File(PathBuf::from(path))),
        }
    }
}

/// Everything the binary runs on, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Addresses to listen on, as given (port 0 not yet resolved).
    pub listen: Vec<SocketAddr>,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Requested IO driver.
    pub driver: DriverChoice,
    /// Access-log destination.
    pub access_log: AccessLogTarget,
    /// Access-log line format.
    pub access_log_format: AccessLogFormat,
    /// Where to serve metrics and health checks, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Connection limit over all threads (at least 1).
    pub max_connections: usize,
    /// How long an idle upstream connection stays in the pool (zero: no reuse).
    pub pool_idle: Duration,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// The core's configuration (timeouts and policy).
    pub config: Config,
    /// The command line these settings came from (without the program name): a reload
    /// builds the settings again from it, re-reading every file it names.
    pub args: CommandLine,
    /// The `--config` file, if any.
    pub config_file: Option<PathBuf>,
    /// TLS interception (`--intercept` and its flags), if on.
    pub intercept: Option<InterceptFlags>,
    /// The HTTPS proxy listener (`--tls-listen` and its certificate), if on.
    pub tls_listen: Option<TlsListenFlags>,
}

/// The HTTPS listener's flags, checked for consistency; the files are read at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListenFlags {
    /// `--tls-listen` addresses, as given (port 0 not yet resolved).
    pub addrs: Vec<SocketAddr>,
    /// `--tls-cert`.
    pub cert: PathBuf,
    /// `--tls-key`.
    pub key: PathBuf,
    /// `--tls-key-log` (`SSLKEYLOGFILE` applies too when absent).
    pub key_log: Option<PathBuf>,
}

/// Default `--cert-cache`.
pub const DEFAULT_CERT_CACHE: usize = 10_000;

/// The interception flags, checked for consistency; the files are read at start-up (and
/// again on SIGHUP).
#[derive(Clone, Debug, PartialEq)]
pub struct InterceptFlags {
    /// `--intercept` patterns.
    pub patterns: ringway_core::egress::HostPatterns,
    /// `--ca-cert`.
    pub ca_cert: PathBuf,
    /// `--ca-key`.
    pub ca_key: PathBuf,
    /// `--upstream-ca`.
    pub upstream_ca: Vec<PathBuf>,
    /// `--insecure-upstream`.
    pub insecure_upstream: bool,
    /// `--cert-cache`.
    pub cert_cache: usize,
    /// `--tls-key-log`.
    pub tls_key_log: Option<PathBuf>,
}

/// The command line as given, kept for reloads. Its `Debug` (what `--check-config` prints)
/// hides the password of any `scheme://user:password@host` argument (`--upstream-proxy`):
/// key material never reaches a log or a terminal through us.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CommandLine(pub Vec<String>);

impl std::ops::Deref for CommandLine {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.0
    }
}

impl std::fmt::Debug for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|a| redact_userinfo(a)))
            .finish()
    }
}

/// `a` with the password of a `scheme://user:password@host` URL replaced by `***`.
fn redact_userinfo(a: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = a.find("://").map(|i| i + 3) else {
        return a.into();
    };
    let authority_end = a[start..].find('/').map_or(a.len(), |i| start + i);
    let Some(at) = a[start..authority_end].rfind('@').map(|i| start + i) else {
        return a.into();
    };
    let user_end = a[start..at].find(':').map_or(at, |i| start + i);
    format!("{}:***{}", &a[..user_end], &a[at..]).into()
}

/// What `main` should do after looking at the command line.
#[derive(Debug)]
pub enum Parsed {
    /// Run the proxy.
    Run(Box<Settings>),
    /// Print this to stdout and exit 0 (`--help`, `--version`).
    Exit(String),
    /// Print this one line to stderr and exit 2.
    Error(String),
}

/// The proxy's default listen address: loopback only, never an open proxy by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// Default `--pool-idle-timeout`: below common origin keep-alive timeouts (nginx 75 s, Go
/// 90 s), long enough for bursts.
pub const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(30);
/// Default `--shutdown-grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Parses `args` (without the program name), and the `--config` file if it names one.
pub fn parse(args: &[&str]) -> Parsed {
    let command_line = match Args::from_args(&["ringway"], args) {
        Ok(a) => a,
        Err(early) => {
            return match early.status {
                Ok(()) => Parsed::Exit(early.output),
                Err(()) => Parsed::Error(first_line(&early.output)),
            }
        }
    };
    if command_line.version {
        return Parsed::Exit(format!("ringway {}\n", env!("CARGO_PKG_VERSION")));
    }
    let check = command_line.check_config;
    let config_file = command_line.config.clone();
    let (args_used, from_file) = match &config_file {
        None => (command_line, Vec::new()),
        Some(path) => match with_file(path, args) {
            Ok(merged) => merged,
            Err(e) => return Parsed::Error(e),
        },
    };
    let mut settings = match validate(args_used) {
        Ok(s) => s,
        Err(e) => return Parsed::Error(blame_file(e, config_file.as_deref(), &from_file)),
    };
    settings.args = CommandLine(args.iter().map(|a| a.to_string()).collect());
    settings.config_file = config_file;
    if check {
        return Parsed::Exit(format!("ringway: configuration OK\n{settings:#?}\n"));
    }
    Parsed::Run(Box::new(settings))
}

/// The settings of `path` merged under the command line `command_line`: every file entry
/// whose flag the command line does not give, then the command line. Returns the parsed
/// flags and the file entries used. Each file entry is first parsed alone, so an unknown key
/// or a bad value is reported with its key and line.
fn with_file(
    path: &std::path::Path,
    command_line: &[&str],
) -> Result<(Args, Vec<config_file::Entry>), String> {
    let at = format!("--config {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| format!("{at}: {e}"))?;
    let entries = config_file::translate(&text).map_err(|e| format!("{at}: {e}"))?;
    let given: Vec<&str> = command_line
        .iter()
        .copied()
        .filter(|a| a.starts_with("--"))
        .collect();
    let mut merged: Vec<&str> = Vec::new();
    let mut used = Vec::new();
    for entry in entries {
        let alone: Vec<&str> = entry.args.iter().map(String::as_str).collect();
        if let Err(early) = Args::from_args(&["ringway"], &alone) {
            let message = first_line(&early.output);
            let message = if message.starts_with("Unrecognized argument") {
                format!("unknown key (there is no flag {})", entry.flag)
            } else {
                message
            };
            return Err(format!(
                "{at}: line {}: {}: {message}",
                entry.line, entry.key
            ));
        }
        if given.contains(&entry.flag.as_str()) {
            continue;
        }
        used.push(entry);
    }
    for entry in &used {
        merged.extend(entry.args.iter().map(String::as_str));
    }
    merged.extend_from_slice(command_line);
    let args = Args::from_args(&["ringway"], &merged)
        .map_err(|early| format!("{at}: {}", first_line(&early.output)))?;
    Ok((args, used))
}

/// Points an error about a flag that came from the config file at its key and line.
fn blame_file(
    error: String,
    path: Option<&std::path::Path>,
    from_file: &[config_file::Entry],
) -> String {
    let flag = error.split([':', ' ']).next().unwrap_or("");
    match (path, from_file.iter().find(|e| e.flag == flag)) {
        (Some(path), Some(entry)) => format!(
            "--config {}: line {}: {}: {error}",
            path.display(),
            entry.line,
            entry.key
        ),
        _ => error,
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim()
        .to_string()
}

fn validate(args: Args) -> Result<Settings, String> {
    let intercept = intercept_flags(&args)?;
    let tls_listen = tls_listen_flags(&args)?;
    let threads = match args.threads {
        Some(0) => return Err("--threads: must be at least 1".into()),
        Some(n) if n > 1024 => return Err("--threads: at most 1024".into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let max_connections = match args.max_connections {
        Some(0) => return Err("--max-connections: must be at least 1".into()),
        Some(n) => n,
        None => DEFAULT_MAX_CONNECTIONS,
    };
    // The default plain listener is for a command line that asks for no listener at all: an
    // HTTPS-only proxy (`--tls-listen` alone) listens in clear nowhere.
    let listen = if args.listen.is_empty() && args.tls_listen.is_empty() {
        vec![DEFAULT_LISTEN.parse().expect("valid default")]
    } else {
        args.listen
    };
    let mut config = Config::default();
    match args.max_header_fields {
        Some(n) if n == 0 || n > MAX_HEADER_SLOTS => {
            return Err(format!("--max-header-fields: from 1 to {MAX_HEADER_SLOTS}"))
        }
        Some(n) => config.max_headers = n,
        None => {}
    }
    for (flag, value, slot) in [
        (
            "--connect-timeout",
            args.connect_timeout,
            &mut config.connect_timeout,
        ),
        ("--dns-timeout", args.dns_timeout, &mut config.dns_timeout),
        (
            "--header-timeout",
            args.header_timeout,
            &mut config.header_timeout,
        ),
        (
            "--idle-timeout",
            args.idle_timeout,
            &mut config.idle_timeout,
        ),
        (
            "--tunnel-idle-timeout",
            args.tunnel_idle_timeout,
            &mut config.tunnel_idle_timeout,
        ),
    ] {
        if let Some(d) = value {
            if d.is_zero() {
                return Err(format!("{flag}: must be longer than zero"));
            }
            *slot = d;
        }
    }
    config.policy = Policy {
        allowed_clients: if args.allow_client.is_empty() {
            Policy::loopback()
        } else {
            args.allow_client
        },
        connect_ports: args
            .connect_ports
            .unwrap_or_else(|| Policy::default().connect_ports),
        ..Policy::default()
    };
    if let Some(path) = &args.auth_file {
        load_credentials(path, &mut config.policy)?;
    }
    let egress = &mut config.policy.egress;
    for c in &args.allow_range {
        egress.allow_range(*c);
    }
    for c in &args.deny_range {
        egress.deny_range(*c);
    }
    egress.set_allow_private(args.allow_private);
    crate::egress::add_patterns(
        "--allow-domain",
        &args.allow_domain,
        egress.allow_domains_mut(),
    )?;
    crate::egress::add_patterns(
        "--deny-domain",
        &args.deny_domain,
        egress.deny_domains_mut(),
    )?;
    match &args.upstream_proxy {
        Some(url) => {
            let mut parent =
                ParentProxy::from_url(url).map_err(|e| format!("--upstream-proxy: {e}"))?;
            crate::egress::add_patterns(
                "--no-upstream-proxy",
                &args.no_upstream_proxy,
                parent.bypass_mut(),
            )?;
            config.parent = Some(parent);
        }
        None if !args.no_upstream_proxy.is_empty() => {
            return Err("--no-upstream-proxy: needs --upstream-proxy".into())
        }
        None => {}
    }
    if let Some(name) = &args.via_name {
        config.via_pseudonym = via_name(name)?;
    }
    // Metrics are fed from the access records, so they need them even with no log.
    config.access_records =
        args.access_log != AccessLogTarget::Off || args.metrics_listen.is_some();
    config.max_connections = max_connections;
    config.max_connections_per_client = args.max_connections_per_client.unwrap_or(0);
    Ok(Settings {
        listen,
        threads,
        driver: args.driver,
        access_log: args.access_log,
        access_log_format: args.access_log_format,
        metrics_listen: args.metrics_listen,
        max_connections,
        pool_idle: args.pool_idle_timeout.unwrap_or(DEFAULT_POOL_IDLE),
        shutdown_grace: args.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        config,
        args: CommandLine::default(),
        config_file: None,
        intercept,
        tls_listen,
    })
}

/// The HTTPS listener's flags: `--tls-listen` needs `--tls-cert` and `--tls-key`, and they
/// mean nothing without it.
fn tls_listen_flags(args: &Args) -> Result<Option<TlsListenFlags>, String> {
    match (&args.tls_cert, &args.tls_key) {
        _ if args.tls_listen.is_empty() => {
            if args.tls_cert.is_some() || args.tls_key.is_some() {
                return Err("--tls-cert and --tls-key need --tls-listen".into());
            }
            Ok(None)
        }
        (Some(cert), Some(key)) => Ok(Some(TlsListenFlags {
            addrs: args.tls_listen.clone(),
            cert: cert.clone(),
            key: key.clone(),
            key_log: args.tls_key_log.clone(),
        })),
        _ => Err("--tls-listen: needs --tls-cert FILE and --tls-key FILE".into()),
    }
}

/// `name` as a `Via` pseudonym (an RFC 9110 token), interned: the core keeps it as a
/// `&'static str`, and a reload that names it again must not leak it again.
fn via_name(name: &str) -> Result<&'static str, String> {
    use std::sync::Mutex;
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!(
            "--via-name {name}: must be a token (letters, digits, -._~ ...)"
        ));
    }
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.iter().find(|n| **n == name) {
        return Ok(known);
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    Ok(leaked)
}

/// The interception flags: `--intercept` needs the CA (`--ca-cert` and `--ca-key`, both or
/// neither), and the CA and TLS flags mean nothing without `--intercept`.
fn intercept_flags(args: &Args) -> Result<Option<InterceptFlags>, String> {
    let tls_flags_given = args.ca_cert.is_some()
        || args.ca_key.is_some()
        || !args.upstream_ca.is_empty()
        || args.insecure_upstream
        || args.cert_cache.is_some()
        // The key log also serves the HTTPS listener's sessions.
        || (args.tls_key_log.is_some() && args.tls_listen.is_empty());
    if args.intercept.is_empty() {
        if tls_flags_given {
            return Err(
                "--ca-cert, --ca-key, --upstream-ca, --insecure-upstream, --cert-cache and --tls-key-log need --intercept (--tls-key-log: or --tls-listen)".into(),
            );
        }
        return Ok(None);
    }
    let mut patterns = ringway_core::egress::HostPatterns::new();
    crate::egress::add_patterns("--intercept", &args.intercept, &mut patterns)?;
    let (ca_cert, ca_key) = match (&args.ca_cert, &args.ca_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            return Err(
                "--intercept: needs the CA: --ca-cert FILE --ca-key FILE (make one with `ringway ca-init --dir DIR`)".into(),
            )
        }
    };
    let cert_cache = match args.cert_cache {
        Some(0) => return Err("--cert-cache: must be at least 1".into()),
        Some(n) => n,
        None => DEFAULT_CERT_CACHE,
    };
    Ok(Some(InterceptFlags {
        patterns,
        ca_cert,
        ca_key,
        upstream_ca: args.upstream_ca.clone(),
        insecure_upstream: args.insecure_upstream,
        cert_cache,
        tls_key_log: args.tls_key_log.clone(),
    }))
}

/// Reads `user:password` lines into the policy. An empty file is refused: it would look like
/// authentication is on while nobody could log in.
fn load_credentials(path: &std::path::Path, policy: &mut Policy) -> Result<(), String> {
    let flag = format!("--auth-file {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| format!("{flag}: {e}"))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, password)) if !user.is_empty() => {
                policy.add_basic_credentials(user, password)
            }
            _ => return Err(format!("{flag}: line {}: expected user:password", n + 1)),
        }
    }
    if policy.basic_credentials.is_empty() {
        return Err(format!("{flag}: no user:password lines"));
    }
    Ok(())
}

/// Parses a duration with a unit: `500ms`, `10s`, `5m`, `1h` (a fraction such as `1.5s` is
/// fine). A bare number is refused: `--idle-timeout 60` could mean seconds or milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration with a unit, such as 500ms, 10s, 5m or 1h";
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| HINT.to_string())?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| HINT.to_string())?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(HINT.into()),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 86_400.0 * 365.0 {
        return Err("duration too long (at most a year)".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Settings {
        match parse(args) {
            Parsed::Run(s) => *s,
            other => panic!("expected settings, got {other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        match parse(args) {
            Parsed::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parent_proxy_flags() {
        let s = run(&[
            "--upstream-proxy",
            "http://alice:s3cret%40x@proxy.corp:3128",
            "--no-upstream-proxy",
            "*.corp",
            "--no-upstream-proxy",
            "10.0.0.0/8",
            "--via-name",
            "edge-1",
        ]);
        let parent = s.config.parent.as_ref().unwrap();
        assert_eq!(parent.authority().to_string(), "proxy.corp:3128");
        assert!(parent.has_credentials());
        assert_eq!(parent.bypass().len(), 2);
        assert_eq!(s.config.via_pseudonym, "edge-1");
        // What --check-config prints never shows the password, plain or encoded.
        let shown = format!("{s:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("YWxpY2U6czNjcmV0QHg="), "{shown}");
        assert!(
            shown.contains("http://alice:***@proxy.corp:3128"),
            "{shown}"
        );
        assert!(error(&["--no-upstream-proxy", "*.corp"]).contains("needs --upstream-proxy"));
        assert!(error(&["--upstream-proxy", "socks5://p:1080"]).starts_with("--upstream-proxy: "));
        assert!(error(&["--via-name", "a b"]).starts_with("--via-name "));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "10", "s", "10x", "-1s", "1..2s", "ms10", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn defaults_are_safe() {
        let s = run(&[]);
        assert_eq!(s.listen, vec!["127.0.0.1:3128".parse().unwrap()]);
        assert!(s.threads >= 1);
        assert_eq!(s.driver, DriverChoice::Auto);
        assert_eq!(s.access_log, AccessLogTarget::Stdout);
        assert_eq!(s.access_log_format, AccessLogFormat::Text);
        assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(s.pool_idle, Duration::from_secs(30));
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        assert_eq!(s.config, Config::default());
        assert_eq!(s.config.max_headers, 256);
        assert!(s.config.policy.admits("127.0.0.1".parse().unwrap()));
        assert!(!s.config.policy.admits("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn tls_listen_alone_means_no_plain_listener() {
        let tls = [
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-listen",
            "[::1]:0",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ];
        let s = run(&tls);
        assert!(s.listen.is_empty());
        let flags = s.tls_listen.unwrap();
        assert_eq!(flags.addrs.len(), 2);
        assert_eq!(
            (flags.cert.to_str(), flags.key.to_str()),
            (Some("c.pem"), Some("k.pem"))
        );
        let mut both = tls.to_vec();
        both.extend(["--listen", "127.0.0.1:3128"]);
        assert_eq!(run(&both).listen.len(), 1, "both when both are asked for");
        assert!(error(&["--tls-listen", "127.0.0.1:0"]).contains("--tls-cert FILE"));
        assert!(error(&["--tls-key", "k.pem"]).contains("need --tls-listen"));
    }

    #[test]
    fn every_flag() {
        let s = run(&[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::1]:0",
            "--threads",
            "3",
            "--driver",
            "epoll",
            "--connect-ports",
            "any",
            "--allow-client",
            "10.0.0.0/8",
            "--access-log",
            "/tmp/ringway.log",
            "--access-log-format",
            "json",
            "--connect-timeout",
            "2s",
            "--dns-timeout",
            "3s",
            "--header-timeout",
            "500ms",
            "--idle-timeout",
            "1m",
            "--tunnel-idle-timeout",
            "1h",
            "--max-connections",
            "10",
            "--max-header-fields",
            "1024",
        ]);
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.threads, 3);
        assert_eq!(s.driver, DriverChoice::Epoll);
        assert_eq!(s.config.policy.connect_ports, PortRule::Any);
        assert!(s.config.policy.admits("10.1.2.3".parse().unwrap()));
        assert!(!s.config.policy.admits("127.0.0.1".parse().unwrap()));
        assert_eq!(
            s.access_log,
            AccessLogTarget::File("/tmp/ringway.log".into())
        );
        assert_eq!(s.config.connect_timeout, Duration::from_secs(2));
        assert_eq!(s.config.dns_timeout, Duration::from_secs(3));
        assert_eq!(s.config.header_timeout, Duration::from_millis(500));
        assert_eq!(s.config.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.config.tunnel_idle_timeout, Duration::from_secs(3600));
        assert_eq!(s.max_connections, 10);
        assert_eq!(s.config.max_headers, 1024);
        assert_eq!(s.access_log_format, AccessLogFormat::Json);
        assert!(s.config.access_records);
    }

    #[test]
    fn pool_idle_and_shutdown_grace_may_be_zero() {
        let s = run(&["--pool-idle-timeout", "0s", "--shutdown-grace", "0s"]);
        assert_eq!(
            (s.pool_idle, s.shutdown_grace),
            (Duration::ZERO, Duration::ZERO)
        );
        let s = run(&["--pool-idle-timeout", "5s", "--shutdown-grace", "1m"]);
        assert_eq!(
            (s.pool_idle, s.shutdown_grace),
            (Duration::from_secs(5), Duration::from_secs(60))
        );
    }

    #[test]
    fn no_access_log_means_no_records_from_the_core() {
        let s = run(&["--access-log", "off"]);
        assert_eq!(s.access_log, AccessLogTarget::Off);
        assert!(!s.config.access_records);
        assert_eq!(s.metrics_listen, None);
        let s = run(&["--access-log", "off", "--metrics-listen", "127.0.0.1:0"]);
        assert!(s.config.access_records, "metrics count the records");
        assert_eq!(s.metrics_listen, Some("127.0.0.1:0".parse().unwrap()));
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["--threads", "0"][..], "--threads"),
            (&["--threads", "x"][..], "--threads"),
            (&["--driver", "kqueue"][..], "--driver"),
            (&["--access-log-format", "xml"][..], "--access-log-format"),
            (&["--connect-ports", "0"][..], "--connect-ports"),
            (&["--allow-client", "nonsense"][..], "--allow-client"),
            (&["--listen", "localhost"][..], "--listen"),
            (&["--idle-timeout", "60"][..], "--idle-timeout"),
            (&["--header-timeout", "0s"][..], "--header-timeout"),
            (&["--max-connections", "0"][..], "--max-connections"),
            (&["--max-header-fields", "0"][..], "--max-header-fields"),
            (&["--max-header-fields", "1025"][..], "--max-header-fields"),
            (
                &["--auth-file", "/nonexistent/ringway-users"][..],
                "--auth-file",
            ),
        ] {
            let e = error(args);
            assert!(e.contains(flag), "{args:?}: {e:?} should name {flag}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
        assert!(!error(&["--bogus"]).is_empty());
    }

    #[test]
    fn auth_file_lines_become_credentials() {
        let dir = std::env::temp_dir().join(format!("ringway-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("users");
        std::fs::write(&good, "# users\n\nAladdin:open sesame\r\nbob:pa:ss\n").unwrap();
        let Parsed::Run(s) = parse(&["--auth-file", good.to_str().unwrap()]) else {
            panic!("a valid file is accepted")
        };
        let policy = &s.config.policy;
        assert!(policy.authorizes(Some(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(policy.authorizes(Some(b"Basic Ym9iOnBhOnNz")), "bob:pa:ss");
        assert!(!policy.authorizes(None));
        for (text, why) in [
            ("nobody\n", "line 1"),
            ("# only comments\n", "no user:password"),
        ] {
            let bad = dir.join("bad");
            std::fs::write(&bad, text).unwrap();
            let e = error(&["--auth-file", bad.to_str().unwrap()]);
            assert!(e.contains("--auth-file") && e.contains(why), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Writes `text` to a fresh file and returns its path.
    fn config_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringway-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn config_file_settings_and_command_line_overrides() {
        let path = config_file(
            "a.toml",
            "listen = [\"127.0.0.1:0\", \"[::1]:0\"]\nthreads = 3\nconnect_ports = \"any\"\n\
             allow_client = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\nidle_timeout = \"1m\"\n\
             access_log_format = \"json\"\n",
        );
        let p = path.to_str().unwrap();
        let s = run(&["--config", p]);
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.threads, 3);
        assert_eq!(s.config.policy.connect_ports, PortRule::Any);
        assert_eq!(s.config.policy.allowed_clients.len(), 2);
        assert_eq!(s.config.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.access_log_format, AccessLogFormat::Json);
        assert_eq!(s.config_file.as_deref(), Some(path.as_path()));
        assert_eq!(*s.args, ["--config", p]);
        // The command line replaces single values and whole lists.
        let s = run(&[
            "--threads",
            "1",
            "--config",
            p,
            "--allow-client",
            "172.16.0.0/12",
        ]);
        assert_eq!(s.threads, 1);
        assert_eq!(s.listen.len(), 2, "not overridden: the file's");
        assert_eq!(
            s.config.policy.allowed_clients,
            vec!["172.16.0.0/12".parse::<Cidr>().unwrap()],
            "the command line's list, not both"
        );
    }

    #[test]
    fn config_file_errors_name_key_and_line() {
        for (name, text, expected) in [
            (
                "unknown.toml",
                "threads = 1\nbogus_flag = 2\n",
                "line 2: bogus_flag: unknown key (there is no flag --bogus-flag)",
            ),
            (
                "value.toml",
                "\nthreads = \"many\"\n",
                "line 2: threads: Error parsing option '--threads' with value 'many'",
            ),
            (
                "zero.toml",
                "\n\nthreads = 0\n",
                "line 3: threads: --threads: must be at least 1",
            ),
            ("syntax.toml", "threads = 1\nlisten = [\n", "line 2"),
            (
                "table.toml",
                "[listen]\nx = 1\n",
                "line 1: listen: expected a string",
            ),
        ] {
            let path = config_file(name, text);
            let e = error(&["--config", path.to_str().unwrap()]);
            let at = format!("--config {}: ", path.display());
            assert!(e.starts_with(&at), "{e}");
            assert!(e[at.len()..].starts_with(expected), "{name}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let e = error(&["--config", "/nonexistent/ringway.toml"]);
        assert!(e.starts_with("--config /nonexistent/ringway.toml: "), "{e}");
    }

    #[test]
    fn check_config_prints_the_effective_settings() {
        let path = config_file("check.toml", "threads = 2\n");
        match parse(&["--config", path.to_str().unwrap(), "--check-config"]) {
            Parsed::Exit(text) => {
                assert!(text.starts_with("ringway: configuration OK\n"), "{text}");
                assert!(text.contains("threads: 2,"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(error(&["--check-config", "--threads", "0"]).contains("--threads"));
    }

    #[test]
    fn help_and_version_exit_cleanly() {
        match parse(&["--help"]) {
            Parsed::Exit(text) => assert!(text.contains("--connect-ports")),
            other => panic!("{other:?}"),
        }
        match parse(&["--version"]) {
            Parsed::Exit(text) => assert!(text.starts_with("ringway ")),
            other => panic!("{other:?}"),
        }
    }
}
