//! `[[job]]`s compiled once at start: their statements parsed, their
//! request templates read, their schedules parsed in their time zones,
//! and the payload fields each one needs listed (so a route's enqueue or
//! `kiln jobs enqueue` that leaves one out is refused up front, not at
//! run time).

use std::str::FromStr;

use jiff_cron::jiff;

use crate::config::{JobConfig, JobKind};
use crate::dynamic::db::sql::{Statement, parse_typed};
use crate::http::metrics::Histogram;

/// One declared job, compiled.
pub(crate) struct Job {
    pub config: JobConfig,
    pub plan: Plan,
    pub schedule: Option<Schedule>,
    /// Seconds each delivery took.
    pub run_time: Histogram,
}

/// What a delivery of the job does.
pub(crate) enum Plan {
    /// Statements run in one transaction with the jobs' success.
    Sql { statements: Vec<Statement> },
    /// One request.
    Http {
        url: Vec<Part>,
        headers: Vec<(String, Vec<Part>)>,
        /// A query whose rows are the body, instead of the payload(s).
        body_sql: Option<Statement>,
    },
    /// URLs rendered into the route cache (templates over the payload).
    Warm { urls: Vec<String> },
    /// Cache tags dropped (templates over the payload).
    Purge { tags: Vec<String> },
}

impl Plan {
    /// Whether the job acts on a server's caches (run only where one is
    /// attached).
    pub(crate) fn is_maintenance(&self) -> bool {
        matches!(self, Plan::Warm { .. } | Plan::Purge { .. })
    }
}

/// A piece of a URL or header value: fixed (`${VAR}` read at start) or a
/// template whose `{name}`s are filled from the payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Fixed(String),
    Template(String),
}

/// A cron schedule in its time zone.
pub(crate) struct Schedule {
    cron: jiff_cron::Schedule,
    zone: jiff::tz::TimeZone,
}

impl Schedule {
    /// The first tick strictly after `after_ms` (Unix milliseconds).
    pub(crate) fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after = jiff::Timestamp::from_millisecond(after_ms)
            .ok()?
            .to_zoned(self.zone.clone());
        let next = self.cron.after(after).next()?;
        Some(next.timestamp().as_millisecond())
    }
}

/// The `{name}` placeholders of a template.
pub(crate) fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        names.push(rest[open + 1..open + close].to_string());
        rest = &rest[open + close + 1..];
    }
    names
}

/// The parameter that carries a batch's payloads, a JSON array.
pub(crate) const PAYLOADS: &str = "payloads";
/// The parameter that carries one job's whole payload, as JSON text.
pub(crate) const PAYLOAD: &str = "payload";

impl Job {
    /// Compiles `config`; `at` names it in errors.
    pub(crate) fn compile(config: &JobConfig, at: &str) -> Result<Job, String> {
        let parse = |what: String, sql: &str| {
            parse_typed(sql, &|_| None).map_err(|err| format!("{at}: {what}: {err}"))
        };
        let plan = match config.kind {
            JobKind::Sql => Plan::Sql {
                statements: config
                    .exec
                    .iter()
                    .enumerate()
                    .map(|(number, sql)| parse(format!("exec[{number}]"), sql))
                    .collect::<Result<_, _>>()?,
            },
            JobKind::Http => Plan::Http {
                url: parts(config.url.as_deref().unwrap_or_default())
                    .map_err(|err| format!("{at}: url: {err}"))?,
                headers: config
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        parts(value)
                            .map(|parts| (name.clone(), parts))
                            .map_err(|err| format!("{at}: headers.{name}: {err}"))
                    })
                    .collect::<Result<_, _>>()?,
                body_sql: config
                    .body_sql
                    .as_deref()
                    .map(|sql| parse("body_sql".to_string(), sql))
                    .transpose()?,
            },
            JobKind::Warm => Plan::Warm {
                urls: config.urls.clone(),
            },
            JobKind::Purge => Plan::Purge {
                tags: config.tags.clone(),
            },
        };
        let schedule = config
            .schedule
            .as_deref()
            .map(|expression| {
                let cron = jiff_cron::Schedule::from_str(expression)
                    .map_err(|err| format!("{at}: schedule {expression:?}: {err}"))?;
                let zone = jiff::tz::TimeZone::get(&config.time_zone)
                    .map_err(|err| format!("{at}: time_zone {:?}: {err}", config.time_zone))?;
                Ok::<_, String>(Schedule { cron, zone })
            })
            .transpose()?;
        if let Plan::Http { url, .. } = &plan {
            let start: String = url
                .iter()
                .map(|part| match part {
                    Part::Fixed(text) | Part::Template(text) => text.as_str(),
                })
                .collect();
            if !(start.starts_with("http://") || start.starts_with("https://")) {
                return Err(format!(
                    "{at}: url {start:?}: must start with http:// or https://"
                ));
            }
        }
        let job = Job {
            config: config.clone(),
            plan,
            schedule,
            run_time: Histogram::default(),
        };
        job.check_parameters(at)?;
        Ok(job)
    }

    /// A batched job reads its payloads as `:payloads` only; a single
    /// one never sees `:payloads`.
    fn check_parameters(&self, at: &str) -> Result<(), String> {
        let batched = self.config.batch.is_some();
        let parameters = self.parameters();
        if batched {
            if let Some(name) = parameters.iter().find(|name| *name != PAYLOADS) {
                return Err(format!(
                    "{at}: a batched job reads its payloads as :{PAYLOADS} (a JSON array); \
                     {{{name}}} / :{name} names one payload's field"
                ));
            }
        } else if parameters.iter().any(|name| name == PAYLOADS) {
            return Err(format!(
                "{at}: :{PAYLOADS} is a batch's payloads; give batch = {{ size = … }} or use :{PAYLOAD}"
            ));
        }
        if self.schedule.is_some() {
            let payload: serde_json::Map<String, serde_json::Value> = self
                .config
                .payload
                .iter()
                .map(|(key, value)| (key.clone(), serde_json::to_value(value).unwrap_or_default()))
                .collect();
            if let Some(missing) = self.missing_fields(&payload).first() {
                return Err(format!(
                    "{at}: payload gives no {missing}, which the job reads"
                ));
            }
        }
        Ok(())
    }

    /// The statement parameters and template placeholders the job reads.
    fn parameters(&self) -> Vec<String> {
        match &self.plan {
            Plan::Sql { statements } => statements
                .iter()
                .flat_map(|statement| statement.params.iter().cloned())
                .collect(),
            Plan::Http {
                url,
                headers,
                body_sql,
            } => std::iter::once(url)
                .chain(headers.iter().map(|(_, parts)| parts))
                .flat_map(|parts| {
                    parts.iter().flat_map(|part| match part {
                        Part::Template(text) => placeholders(text),
                        Part::Fixed(_) => Vec::new(),
                    })
                })
                .chain(
                    body_sql
                        .iter()
                        .flat_map(|statement| statement.params.iter().cloned()),
                )
                .collect(),
            Plan::Warm { urls: templates } | Plan::Purge { tags: templates } => templates
                .iter()
                .flat_map(|template| placeholders(template))
                .collect(),
        }
    }

    /// The payload fields the job reads that `has` does not give.
    pub(crate) fn missing_fields(
        &self,
        has: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        self.missing_keys(|name| has.contains_key(name))
    }

    /// Fields a route's `[route.enqueue]` payload must give.
    pub(crate) fn missing_keys(&self, has: impl Fn(&str) -> bool) -> Vec<String> {
        let mut missing: Vec<String> = self
            .parameters()
            .into_iter()
            .filter(|name| name != PAYLOAD && name != PAYLOADS && !has(name))
            .collect();
        missing.sort();
        missing.dedup();
        missing
    }
}

/// A URL's or header value's parts: `${VAR}` (or `${VAR:-default}`) read
/// from the environment now, so secrets and endpoints stay out of
/// build.toml and a missing variable is an error at start, not a failed
/// request later.
fn parts(value: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find("${") {
        if open > 0 {
            parts.push(Part::Template(rest[..open].to_string()));
        }
        let close = rest[open..]
            .find('}')
            .map(|at| open + at)
            .ok_or_else(|| format!("{:?}: ${{ without its }}", rest))?;
        let (variable, default) = match rest[open + 2..close].split_once(":-") {
            Some((variable, default)) => (variable, Some(default)),
            None => (&rest[open + 2..close], None),
        };
        let text = match (std::env::var(variable), default) {
            (Ok(text), _) => text,
            (Err(_), Some(default)) => default.to_string(),
            (Err(_), None) => {
                return Err(format!("the environment variable {variable} is not set"));
            }
        };
        if text.contains(['\r', '\n']) {
            return Err(format!(
                "the environment variable {variable} holds a line break"
            ));
        }
        parts.push(Part::Fixed(text));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Template(rest.to_string()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_listed_in_order() {
        assert_eq!(
            placeholders("https://x/{a}/b/{c}?d={e}"),
            vec!["a".to_string(), "c".to_string(), "e".to_string()]
        );
        assert!(placeholders("no placeholders").is_empty());
    }

    #[test]
    fn header_values_read_environment_variables_at_start() {
        // SAFETY: this test alone reads and sets this variable.
        unsafe { std::env::set_var("KILN_TEST_HOOK_TOKEN", "s3cret") };
        assert_eq!(
            parts("Bearer ${KILN_TEST_HOOK_TOKEN} for {user}").expect("parts"),
            vec![
                Part::Template("Bearer ".into()),
                Part::Fixed("s3cret".into()),
                Part::Template(" for {user}".into()),
            ]
        );
        assert!(
            parts("${KILN_TEST_NOT_SET_ANYWHERE}")
                .expect_err("unset")
                .contains("KILN_TEST_NOT_SET_ANYWHERE")
        );
        assert_eq!(
            parts("${KILN_TEST_NOT_SET_ANYWHERE:-http://h/}").expect("a default"),
            vec![Part::Fixed("http://h/".into())]
        );
    }

    #[test]
    fn schedules_tick_in_their_time_zone() {
        let config: JobConfig = toml::from_str(
            "name = \"daily\"\nkind = \"sql\"\nexec = [\"SELECT 1\"]\nschedule = \"0 30 9 * * *\"\ntime_zone = \"UTC\"\n",
        )
        .expect("a job");
        let job = Job::compile(&config, "job[0]").expect("compiles");
        let schedule = job.schedule.expect("a schedule");
        // 2026-01-01T00:00:00Z → 09:30:00 the same day.
        let next = schedule.next_after(1_767_225_600_000).expect("a tick");
        assert_eq!(next, 1_767_225_600_000 + (9 * 3600 + 30 * 60) * 1000);
        let every_second: JobConfig = toml::from_str(
            "name = \"s\"\nkind = \"sql\"\nexec = [\"SELECT 1\"]\nschedule = \"* * * * * *\"\n",
        )
        .expect("a job");
        let schedule = Job::compile(&every_second, "job[0]")
            .expect("compiles")
            .schedule
            .expect("a schedule");
        assert_eq!(schedule.next_after(1_000_500), Some(1_001_000));
    }

    #[test]
    fn a_bad_cron_expression_names_the_job() {
        let config: JobConfig = toml::from_str(
            "name = \"bad\"\nkind = \"sql\"\nexec = [\"SELECT 1\"]\nschedule = \"61 * * * * *\"\n",
        )
        .expect("a job");
        let err = Job::compile(&config, "job[3] (\"bad\")")
            .err()
            .expect("refused");
        assert!(err.contains("job[3]") && err.contains("schedule"), "{err}");
    }
}
