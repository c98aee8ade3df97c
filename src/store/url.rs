//! Database URLs as BIOMERO writes them for SQLAlchemy, and their masked form
//! for messages (a password never leaves this module unmasked).

use crate::error::{Error, Result};
use percent_encoding::percent_decode_str;
use std::path::PathBuf;
use std::time::Duration;

/// SQLite durability (`?synchronous=` in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// The durable default: a commit survives power loss.
    Full,
    /// Faster commits; the last ones can be lost on power loss, none is split.
    Normal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    Memory,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PostgresTarget {
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host name, address, or a socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub dbname: Option<String>,
    pub connect_timeout: Duration,
    /// How long a command waits without any answer before the server is
    /// asked, on a new connection, whether it still answers (`None`: never).
    pub command_timeout: Option<Duration>,
    pub application_name: Option<String>,
}

#[derive(Debug, Clone)]
pub enum DbUrl {
    Sqlite {
        location: SqliteLocation,
        synchronous: Synchronous,
        /// `?mode=ro`: open the file read-only.
        read_only: bool,
    },
    Postgres(PostgresTarget),
}

impl DbUrl {
    pub fn parse(url: &str) -> Result<DbUrl> {
        let url = url.trim();
        if url.is_empty() {
            return Err(Error::value(
                "url: empty database URL; set SQLALCHEMY_URL or pass url=, e.g. sqlite:///biomero.db",
            ));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            // The text before ':' may be a user name: it is not echoed.
            return Err(Error::value(
                "url: not a database URL (no \"://\" after the scheme; expected sqlite:///path.db or \
                 postgresql://user:password@host/db)",
            ));
        };
        // The user info ends at the last '@' (a password may hold '/', '?'
        // or '@'); nothing of it ever goes into a message.
        let (userinfo, rest) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let params = parse_query(query)?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite+pysqlite" if userinfo.is_none() => parse_sqlite(rest, &params),
            "sqlite" | "sqlite+pysqlite" => Err(Error::value("url: a sqlite URL takes no user or password")),
            "postgresql" | "postgres" | "postgresql+psycopg2" | "postgresql+psycopg" => {
                parse_postgres(userinfo, rest, &params)
            }
            other => Err(Error::value(format!(
                "url: unsupported database scheme {other:?} (supported: sqlite, postgresql, postgres, \
                 postgresql+psycopg2, postgresql+psycopg)"
            ))),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            DbUrl::Sqlite { .. } => "sqlite",
            DbUrl::Postgres(_) => "postgres",
        }
    }

    /// The URL for messages and `status`, password masked as `***`.
    pub fn masked(&self) -> String {
        match self {
            DbUrl::Sqlite {
                location: SqliteLocation::Memory,
                ..
            } => "sqlite:///:memory:".into(),
            DbUrl::Sqlite {
                location: SqliteLocation::File(p),
                ..
            } => format!("sqlite:///{}", p.display()),
            DbUrl::Postgres(t) => {
                let auth = match (&t.user, &t.password) {
                    (Some(u), Some(_)) => format!("{u}:***@"),
                    (Some(u), None) => format!("{u}@"),
                    (None, Some(_)) => ":***@".into(),
                    (None, None) => String::new(),
                };
                let host = if t.host.starts_with('/') {
                    String::new()
                } else {
                    t.host.clone()
                };
                let mut s = format!(
                    "postgresql://{auth}{host}:{}/{}",
                    t.port,
                    t.dbname.as_deref().unwrap_or("")
                );
                if t.host.starts_with('/') {
                    s.push_str(&format!("?host={}", t.host));
                }
                s
            }
        }
    }
}

/// Masks the password of any URL-like text (`scheme://user:secret@host`).
pub fn mask(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let after = &text[scheme_end + 3..];
    let Some(at) = after.rfind('@') else {
        return text.to_owned();
    };
    let userinfo = &after[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &text[..scheme_end + 3],
            &userinfo[..colon],
            &after[at..]
        ),
        None => text.to_owned(),
    }
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k, "query parameter")?, decode(v, "query parameter")?));
    }
    Ok(out)
}

fn decode(s: &str, what: &str) -> Result<String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::value(format!("url: {what} is not valid percent-encoded UTF-8")))
}

fn parse_sqlite(rest: &str, params: &[(String, String)]) -> Result<DbUrl> {
    let mut synchronous = Synchronous::Full;
    let mut read_only = false;
    for (k, v) in params {
        match (k.as_str(), v.to_ascii_lowercase().as_str()) {
            ("mode", "ro") => read_only = true,
            ("mode", "rw" | "rwc") => read_only = false,
            ("mode", _) => {
                return Err(Error::value(format!(
                    "url: mode={v:?} is not supported (use ro for a read-only database, or rw)"
                )))
            }
            ("synchronous", "full") => synchronous = Synchronous::Full,
            ("synchronous", "normal") => synchronous = Synchronous::Normal,
            ("synchronous", _) => {
                return Err(Error::value(format!(
                    "url: synchronous={v:?} is not supported (use full or normal)"
                )))
            }
            _ => {
                return Err(Error::value(format!(
                    "url: unsupported sqlite URL parameter {k:?}"
                )))
            }
        }
    }
    let location = match rest {
        "" | "/" | "/:memory:" => SqliteLocation::Memory,
        path => {
            // sqlite:///rel.db -> "rel.db"; sqlite:////abs.db -> "/abs.db"
            let Some(p) = path.strip_prefix('/') else {
                return Err(Error::value(format!(
                    "url: sqlite URL must look like sqlite:///relative.db or sqlite:////absolute.db, got sqlite://{path}"
                )));
            };
            SqliteLocation::File(PathBuf::from(decode(p, "path")?))
        }
    };
    if read_only && location == SqliteLocation::Memory {
        return Err(Error::value(
            "url: mode=ro needs an SQLite file (an empty memory database cannot be read-only)",
        ));
    }
    Ok(DbUrl::Sqlite {
        location,
        synchronous,
        read_only,
    })
}

fn parse_postgres(
    userinfo: Option<&str>,
    rest: &str,
    params: &[(String, String)],
) -> Result<DbUrl> {
    let (hostport, dbname) = match rest.split_once('/') {
        Some((a, d)) => (a, d),
        None => (rest, ""),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => match ui.split_once(':') {
            Some((u, p)) => (Some(decode(u, "user")?), Some(decode(p, "password")?)),
            None => (Some(decode(ui, "user")?), None),
        },
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        // [::1]:5432
        let (h, p) = h
            .split_once(']')
            .ok_or_else(|| Error::value("url: unterminated [ in host"))?;
        match p.strip_prefix(':') {
            Some(p) => (h.to_owned(), parse_port(p)?),
            None => (h.to_owned(), 5432),
        }
    } else if let Some((h, p)) = hostport.rsplit_once(':') {
        (decode(h, "host")?, parse_port(p)?)
    } else {
        (decode(hostport, "host")?, 5432)
    };
    let mut target = PostgresTarget {
        user: user.filter(|u| !u.is_empty()),
        password,
        host,
        port,
        dbname: Some(decode(dbname, "database name")?).filter(|d| !d.is_empty()),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Some(Duration::from_secs(30)),
        application_name: None,
    };
    for (k, v) in params {
        match k.as_str() {
            "host" => target.host = v.clone(),
            "port" => target.port = parse_port(v)?,
            "user" => target.user = Some(v.clone()),
            "password" => target.password = Some(v.clone()),
            "dbname" => target.dbname = Some(v.clone()),
            "connect_timeout" => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| Error::value(format!("url: connect_timeout={v:?} is not a whole number of seconds")))?;
                target.connect_timeout = Duration::from_secs(secs.max(1));
            }
            "command_timeout" => {
                let secs: u64 = v.parse().map_err(|_| {
                    Error::value(format!(
                        "url: command_timeout={v:?} is not a whole number of seconds (0: no bound)"
                    ))
                })?;
                target.command_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "application_name" => target.application_name = Some(v.clone()),
            "sslmode" => match v.as_str() {
                "disable" | "allow" | "prefer" => {}
                "require" | "verify-ca" | "verify-full" => {
                    return Err(Error::value(format!(
                        "url: sslmode={v} needs TLS, which biomero_rs does not include; \
                         use sslmode=disable or prefer, or connect over a Unix socket (?host=/var/run/postgresql)"
                    )))
                }
                _ => return Err(Error::value(format!("url: unknown sslmode {v:?}"))),
            },
            _ => return Err(Error::value(format!("url: unsupported postgresql URL parameter {k:?}"))),
        }
    }
    if target.host.is_empty() {
        target.host = "localhost".into();
    }
    Ok(DbUrl::Postgres(target))
}

impl PostgresTarget {
    /// The user name libpq would log in as: the URL's, else `PGUSER`, else
    /// the operating system's user.
    pub fn effective_user(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("PGUSER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "postgres".into())
    }

    /// The password as libpq finds it: the URL's, else `PGPASSWORD`, else
    /// the first matching line of the password file (`PGPASSFILE`, else
    /// `~/.pgpass`; ignored, with a warning, when others may read it).
    pub fn effective_password(&self) -> Option<String> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        if let Ok(p) = std::env::var("PGPASSWORD") {
            if !p.is_empty() {
                return Some(p);
            }
        }
        let file = match std::env::var_os("PGPASSFILE") {
            Some(f) if !f.is_empty() => PathBuf::from(f),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
        };
        let meta = std::fs::metadata(&file).ok()?;
        if !meta.is_file() {
            return None;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                log::warn!(
                    "password file {} has group or world access; permissions should be u=rw (0600) \
                     or less: not used",
                    file.display()
                );
                return None;
            }
        }
        let text = std::fs::read_to_string(&file).ok()?;
        let user = self.effective_user();
        let db = self.dbname.clone().unwrap_or_else(|| user.clone());
        let host = if self.host.starts_with('/')
            && ["/var/run/postgresql", "/run/postgresql", "/tmp"].contains(&self.host.as_str())
        {
            "localhost"
        } else {
            self.host.as_str()
        };
        let port = self.port.to_string();
        pgpass_lookup(&text, [host, &port, &db, &user])
    }
}

/// The password of the first line of a `.pgpass` text whose four fields
/// (host, port, database, user; `*` matches anything) match `want`.
fn pgpass_lookup(text: &str, want: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // Fields split at ':' not escaped with '\'; '\' escapes ':' and '\'.
        let mut fields: Vec<String> = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        fields.last_mut().expect("one field").push(n);
                    }
                }
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut().expect("one field").push(c),
            }
        }
        if fields.len() != 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields.pop().expect("five fields"));
        }
    }
    None
}

/// The port, or an error that does not echo it: in a URL whose `@` was
/// forgotten (`postgresql://user:secret/db`) the "port" is the password.
fn parse_port(p: &str) -> Result<u16> {
    p.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        Error::value(
            "url: the port after the host is not a number from 1 to 65535 (if the URL holds a \
             user and password, check that an '@' separates them from the host: \
             postgresql://user:password@host:port/db)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_forms() {
        let m = |u: &str| match DbUrl::parse(u).unwrap() {
            DbUrl::Sqlite { location, .. } => location,
            _ => panic!(),
        };
        assert_eq!(m("sqlite://"), SqliteLocation::Memory);
        assert_eq!(m("sqlite:///:memory:"), SqliteLocation::Memory);
        assert_eq!(
            m("sqlite:///rel/x.db"),
            SqliteLocation::File("rel/x.db".into())
        );
        assert_eq!(
            m("sqlite:////abs/x.db"),
            SqliteLocation::File("/abs/x.db".into())
        );
        assert!(matches!(
            DbUrl::parse("sqlite:///x.db?synchronous=normal").unwrap(),
            DbUrl::Sqlite {
                synchronous: Synchronous::Normal,
                ..
            }
        ));
    }

    #[test]
    fn postgres_forms_and_masking() {
        let DbUrl::Postgres(t) =
            DbUrl::parse("postgresql+psycopg2://bio:p%40ss%3Aw@db.example:6543/biomero").unwrap()
        else {
            panic!()
        };
        assert_eq!(t.password.as_deref(), Some("p@ss:w"));
        assert_eq!((t.host.as_str(), t.port), ("db.example", 6543));
        let u =
            DbUrl::parse("postgresql+psycopg2://bio:p%40ss%3Aw@db.example:6543/biomero").unwrap();
        assert_eq!(u.masked(), "postgresql://bio:***@db.example:6543/biomero");
        let DbUrl::Postgres(t) = DbUrl::parse("postgres://u@/db?host=/var/run/postgresql").unwrap()
        else {
            panic!()
        };
        assert_eq!(t.host, "/var/run/postgresql");
    }

    #[test]
    fn pgpass_lines_match_as_libpq_reads_them() {
        let text =
            "# comment\nother:5432:*:*:no\nlocalhost:5432:db\\:x:bio:p\\:w\\\\d\n*:*:*:bio:star\n";
        assert_eq!(
            pgpass_lookup(text, ["localhost", "5432", "db:x", "bio"]).as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(
            pgpass_lookup(text, ["h", "1", "d", "bio"]).as_deref(),
            Some("star")
        );
        assert_eq!(pgpass_lookup(text, ["h", "1", "d", "eve"]), None);
    }

    #[test]
    fn a_forgotten_at_does_not_echo_the_password() {
        for url in [
            "postgresql://alice:S3cr3t!pw/db",
            "postgresql+psycopg2://alice:S3cr3t!pw",
            "alice:S3cr3t!pw@host/db",
            "postgresql://alice:S3cr3t!pw@host:S3cr3t!pw/db",
        ] {
            let e = DbUrl::parse(url).unwrap_err().to_string();
            assert!(!e.contains("S3cr3t") && !e.contains("alice"), "{e}");
        }
    }

    #[test]
    fn bad_urls_name_the_scheme_and_hide_the_password() {
        let e = DbUrl::parse("mysql://root:hunter2@localhost/db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mysql") && !e.contains("hunter2"), "{e}");
        let e = DbUrl::parse("nonsense:hunter2").unwrap_err().to_string();
        assert!(
            e.contains("not a database URL") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(DbUrl::parse("").is_err());
        let e = DbUrl::parse("postgresql://u:hunter2@h/db?sslmode=require")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sslmode=require") && !e.contains("hunter2"),
            "{e}"
        );
        assert_eq!(
            mask("postgresql://u:secret@h/db"),
            "postgresql://u:***@h/db"
        );
    }
}
