//! A delivery: one claimed job, or a batch of one job's, run to its end
//! (success, a retry with backoff, or burial in the dead-letter state).
//!
//! A `sql` job's statements and its success commit in one transaction, so
//! a crash after the commit cannot run them twice. An `http` job's
//! success is recorded after the response: a crash between the two sends
//! the request again (at least once, as every webhook sender).

use std::sync::Arc;
use std::time::Duration;

use super::declared::{Job, PAYLOAD, PAYLOADS, Part, Plan};
use super::store::Claimed;
use super::{Jobs, backoff, now_ms, sql_value};
use crate::client::outbound::Request;
use crate::config::status_succeeds;
use crate::dynamic::db::{Followup, Row, SqlValue};
use crate::dynamic::routes::fill::fill_template;

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: String,
    /// A retry cannot succeed (the partner refused the request as such).
    pub permanent: bool,
    /// The partner said when to come back (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl From<String> for Failure {
    fn from(error: String) -> Failure {
        Failure {
            error,
            permanent: false,
            retry_after: None,
        }
    }
}

/// Whether a delivery's success is already in the table.
enum Recorded {
    /// Committed with the job's own statements.
    Already,
    /// To be recorded now.
    Pending,
}

/// Body bytes of a failed response quoted in the job's error.
const QUOTED_BODY: usize = 200;

impl Jobs {
    /// Runs `claimed` (jobs of `job`, one unless it batches) to its end.
    pub(super) async fn deliver(&self, job: &Job, claimed: Vec<Claimed>) {
        let name = job.config.name.as_str();
        let claimed = self.bury_spent(job, claimed).await;
        if claimed.is_empty() {
            return;
        }
        let count = claimed.len() as u64;
        self.events.add(name, "started", count);
        self.events.add(name, "delivered", 1);
        self.events.add(name, "payloads", count);
        let started = std::time::Instant::now();
        let timeout = Duration::from_millis(job.config.timeout_ms);
        let outcome = match tokio::time::timeout(timeout, self.execute(job, &claimed)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::from(format!(
                "ran longer than timeout_ms ({})",
                job.config.timeout_ms
            ))),
        };
        let elapsed = started.elapsed();
        job.run_time.observe(elapsed);
        self.busy_micros.fetch_add(
            elapsed.as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let ids: Vec<i64> = claimed.iter().map(|claimed| claimed.id).collect();
        let recorded = match outcome {
            Ok(Recorded::Already) => {
                self.events.add(name, "succeeded", count);
                Ok(())
            }
            Ok(Recorded::Pending) => {
                self.events.add(name, "succeeded", count);
                self.store.succeed(&self.database, &ids, now_ms()).await
            }
            Err(failure) => self.fail(job, &claimed, failure).await,
        };
        if let Err(err) = recorded {
            // The lease runs out and the jobs are claimed again: at least
            // once, never lost.
            tracing::warn!("job {name} {ids:?}: recording the end: {err}");
        }
    }

    /// Buries the jobs whose last attempt's process died holding them;
    /// returns the others.
    async fn bury_spent(&self, job: &Job, claimed: Vec<Claimed>) -> Vec<Claimed> {
        let (spent, live): (Vec<Claimed>, Vec<Claimed>) = claimed
            .into_iter()
            .partition(|claimed| claimed.attempt > claimed.max_attempts);
        if !spent.is_empty() {
            let name = job.config.name.as_str();
            let ids: Vec<i64> = spent.iter().map(|claimed| claimed.id).collect();
            self.events.add(name, "dead", ids.len() as u64);
            let error = "the lease of its last attempt ran out";
            if let Err(err) = self.store.bury(&self.database, &ids, now_ms(), error).await {
                tracing::warn!("job {name}: burying {} spent job(s): {err}", ids.len());
            }
        }
        live
    }

    /// Runs unbatched `sql` jobs claimed together in one transaction, each
    /// in a savepoint of its own (group commit): a job that fails is
    /// rolled back alone and retried or buried; the others' writes and
    /// their success commit together.
    pub(super) async fn deliver_gathered(&self, claimed: Vec<Claimed>) {
        let mut units: Vec<(&Job, Claimed)> = Vec::with_capacity(claimed.len());
        for one in claimed {
            let Some(job) = self.jobs.get(&one.job) else {
                continue;
            };
            if let Some(live) = self.bury_spent(job, vec![one]).await.pop() {
                units.push((job, live));
            }
        }
        let mut groups = Vec::with_capacity(units.len());
        let mut grouped: Vec<(&Job, Claimed)> = Vec::with_capacity(units.len());
        for (job, one) in units {
            let Plan::Sql { statements } = &job.plan else {
                // Only sql jobs are claimed to be gathered; any other
                // runs on its own.
                Box::pin(self.deliver(job, vec![one])).await;
                continue;
            };
            let name = job.config.name.as_str();
            self.events.add(name, "started", 1);
            self.events.add(name, "delivered", 1);
            self.events.add(name, "payloads", 1);
            match payloads(std::slice::from_ref(&one)) {
                Ok(payloads) => {
                    groups.push(self.bound(statements, std::slice::from_ref(&one), &payloads));
                    grouped.push((job, one));
                }
                Err(failure) => self.record_failure(job, &[one], failure).await,
            }
        }
        if grouped.is_empty() {
            return;
        }
        let ids: Vec<i64> = grouped.iter().map(|(_, one)| one.id).collect();
        let store = Arc::clone(&self.store);
        let then = Arc::new(move |succeeded: &[usize]| {
            let done: Vec<i64> = succeeded.iter().map(|&index| ids[index]).collect();
            if done.is_empty() {
                Vec::new()
            } else {
                vec![store.succeed_statement(&done, now_ms())]
            }
        });
        let timeout_ms = grouped
            .iter()
            .map(|(job, _)| job.config.timeout_ms)
            .max()
            .unwrap_or(1);
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            self.database.write_each(groups, then),
        )
        .await;
        let elapsed = started.elapsed();
        self.busy_micros.fetch_add(
            elapsed.as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let outcomes: Vec<Option<String>> = match outcome {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(err)) => vec![Some(err.to_string()); grouped.len()],
            Err(_) => {
                vec![Some(format!("ran longer than timeout_ms ({timeout_ms})")); grouped.len()]
            }
        };
        for ((job, one), outcome) in grouped.into_iter().zip(outcomes) {
            job.run_time.observe(elapsed);
            match outcome {
                None => self.events.add(&job.config.name, "succeeded", 1),
                Some(error) => self.record_failure(job, &[one], Failure::from(error)).await,
            }
        }
    }

    /// [`Jobs::fail`], its own failure to record logged: the lease runs
    /// out and the job is claimed again.
    async fn record_failure(&self, job: &Job, claimed: &[Claimed], failure: Failure) {
        if let Err(err) = self.fail(job, claimed, failure).await {
            tracing::warn!("job {}: recording a failure: {err}", job.config.name);
        }
    }

    /// A job's statements bound to its payload(s): `:payloads` the batch's
    /// JSON array, `:payload` the payload's text, `:field` its value.
    fn bound(
        &self,
        statements: &[crate::dynamic::db::sql::Statement],
        claimed: &[Claimed],
        payloads: &[serde_json::Value],
    ) -> Vec<(String, Vec<SqlValue>)> {
        statements
            .iter()
            .map(|statement| {
                let args = statement
                    .params
                    .iter()
                    .map(|name| bind_one(name, claimed, payloads))
                    .collect();
                (statement.text(self.database.backend()).to_string(), args)
            })
            .collect()
    }

    /// Retries the jobs with attempts left (unless the failure is
    /// permanent) and buries the others.
    async fn fail(
        &self,
        job: &Job,
        claimed: &[Claimed],
        failure: Failure,
    ) -> Result<(), crate::dynamic::db::DbError> {
        let name = job.config.name.as_str();
        let (again, last): (Vec<&Claimed>, Vec<&Claimed>) = claimed
            .iter()
            .partition(|claimed| !failure.permanent && claimed.attempt < claimed.max_attempts);
        if !again.is_empty() {
            let attempt = again
                .iter()
                .map(|claimed| claimed.attempt)
                .max()
                .unwrap_or(1);
            let delay = match failure.retry_after {
                Some(after) => after.min(Duration::from_millis(job.config.backoff_max_ms)),
                None => backoff(&job.config, attempt),
            };
            let ids: Vec<i64> = again.iter().map(|claimed| claimed.id).collect();
            self.events.add(name, "retried", ids.len() as u64);
            tracing::warn!(
                "job {name} {ids:?} failed (attempt {attempt} of {}), retried in {} ms: {}",
                job.config.max_attempts,
                delay.as_millis(),
                failure.error
            );
            let run_at = now_ms() + delay.as_millis() as i64;
            self.store
                .retry(&self.database, &ids, run_at, &failure.error)
                .await?;
        }
        if !last.is_empty() {
            let ids: Vec<i64> = last.iter().map(|claimed| claimed.id).collect();
            self.events.add(name, "dead", ids.len() as u64);
            tracing::warn!(
                "job {name} {ids:?} failed for good{}: {}",
                if failure.permanent {
                    " (a retry cannot help)"
                } else {
                    " (its last attempt)"
                },
                failure.error
            );
            self.store
                .bury(&self.database, &ids, now_ms(), &failure.error)
                .await?;
        }
        Ok(())
    }

    async fn execute(&self, job: &Job, claimed: &[Claimed]) -> Result<Recorded, Failure> {
        let payloads = payloads(claimed)?;
        match &job.plan {
            Plan::Sql { statements } => {
                let statements = self.bound(statements, claimed, &payloads);
                let ids: Vec<i64> = claimed.iter().map(|claimed| claimed.id).collect();
                let success = self.store.succeed_statement(&ids, now_ms());
                let followup: Followup = Arc::new(move |_: &Row| Ok(vec![success.clone()]));
                self.database
                    .write_then(statements, None, Some(followup))
                    .await
                    .map(|_| Recorded::Already)
                    .map_err(|err| Failure::from(err.to_string()))
            }
            Plan::Http {
                url,
                headers,
                body_sql,
            } => {
                let batch = job.config.batch.is_some();
                let fields: Vec<(String, SqlValue)> = if batch {
                    Vec::new()
                } else {
                    payload_fields(&payloads[0])
                };
                let body = match body_sql {
                    Some(statement) => {
                        let (sql, args) = self
                            .bound(std::slice::from_ref(statement), claimed, &payloads)
                            .remove(0);
                        let rows = self
                            .database
                            .read(vec![(sql, args)])
                            .await
                            .map_err(|err| Failure::from(format!("body_sql: {err}")))?;
                        let rows = rows.into_iter().next().unwrap_or_default();
                        serde_json::to_vec(&rows).unwrap_or_default()
                    }
                    None if batch => json_array(claimed).into_bytes(),
                    None => claimed[0].payload.clone().into_bytes(),
                };
                let request = build_request(&job.config.method, url, headers, &fields, body)?;
                self.send(&job.config.success, &request).await?;
                Ok(Recorded::Pending)
            }
            Plan::Warm { urls } => {
                let maintenance = self.maintenance()?;
                for url in filled(urls, &payloads[0])? {
                    maintenance.warm(&url).await.map_err(Failure::from)?;
                }
                Ok(Recorded::Pending)
            }
            Plan::Purge { tags } => {
                let maintenance = self.maintenance()?;
                let tags = filled(tags, &payloads[0])?;
                maintenance.purge(tags).await.map_err(Failure::from)?;
                Ok(Recorded::Pending)
            }
        }
    }

    /// The server's caches, for `warm` and `purge` jobs.
    fn maintenance(&self) -> Result<Arc<dyn super::maintenance::Maintenance>, Failure> {
        self.maintained().ok_or_else(|| {
            Failure::from("no server is attached to run this maintenance job".to_string())
        })
    }

    /// Sends `request`; a status outside `success` is a failure, and a
    /// client error other than 408, 425 and 429 is permanent.
    async fn send(&self, success: &[String], request: &Request) -> Result<(), Failure> {
        let answer =
            self.outbound.send(request).await.map_err(|err| {
                Failure::from(format!("{} {}: {err}", request.method, request.url))
            })?;
        if status_succeeds(success, answer.status) {
            return Ok(());
        }
        let quoted = String::from_utf8_lossy(&answer.body[..answer.body.len().min(QUOTED_BODY)])
            .trim()
            .to_string();
        Err(Failure {
            error: format!(
                "{} {}: status {}{}",
                request.method,
                request.url,
                answer.status,
                if quoted.is_empty() {
                    String::new()
                } else {
                    format!(": {quoted}")
                }
            ),
            permanent: (400..500).contains(&answer.status)
                && ![408, 425, 429].contains(&answer.status),
            retry_after: answer.retry_after.map(Duration::from_secs),
        })
    }
}

/// The claimed jobs' payloads, read; one that is not JSON fails for good.
fn payloads(claimed: &[Claimed]) -> Result<Vec<serde_json::Value>, Failure> {
    claimed
        .iter()
        .map(|claimed| {
            serde_json::from_str(&claimed.payload).map_err(|err| Failure {
                error: format!("job #{}: payload: {err}", claimed.id),
                permanent: true,
                retry_after: None,
            })
        })
        .collect()
}

/// A batch's payloads as one JSON array, in the order they were enqueued.
fn json_array(claimed: &[Claimed]) -> String {
    let texts: Vec<&str> = claimed
        .iter()
        .map(|claimed| claimed.payload.as_str())
        .collect();
    format!("[{}]", texts.join(","))
}

/// The value parameter `name` binds.
fn bind_one(name: &str, claimed: &[Claimed], payloads: &[serde_json::Value]) -> SqlValue {
    match name {
        PAYLOADS => SqlValue::Text(json_array(claimed)),
        PAYLOAD => SqlValue::Text(claimed[0].payload.clone()),
        field => sql_value(&payloads[0][field]),
    }
}

/// `templates` filled from `payload` (a placeholder the payload does not
/// fill fails the job for good).
fn filled(templates: &[String], payload: &serde_json::Value) -> Result<Vec<String>, Failure> {
    let fields = payload_fields(payload);
    templates
        .iter()
        .map(|template| {
            fill_template(template, &fields, &Row::new(), false).map_err(|name| Failure {
                error: format!("{template:?}: the payload gives no {name}"),
                permanent: true,
                retry_after: None,
            })
        })
        .collect()
}

/// A payload's fields as the values templates are filled from.
pub(super) fn payload_fields(payload: &serde_json::Value) -> Vec<(String, SqlValue)> {
    payload
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(key, value)| (key.clone(), sql_value(value)))
                .collect()
        })
        .unwrap_or_default()
}

/// The request of an `http` job: the URL's placeholders filled
/// (percent-encoded), the headers' too (a value with a line break is
/// refused: it would smuggle a header).
fn build_request(
    method: &str,
    url: &[Part],
    headers: &[(String, Vec<Part>)],
    fields: &[(String, SqlValue)],
    body: Vec<u8>,
) -> Result<Request, Failure> {
    let refuse = |error: String| Failure {
        error,
        permanent: true,
        retry_after: None,
    };
    let fill = |parts: &[Part], url: bool, what: &str| -> Result<String, Failure> {
        let mut text = String::new();
        for part in parts {
            match part {
                Part::Fixed(fixed) => text.push_str(fixed),
                Part::Template(template) => {
                    text.push_str(&fill_template(template, fields, &Row::new(), url).map_err(
                        |missing| refuse(format!("{what}: the payload gives no {missing}")),
                    )?)
                }
            }
        }
        Ok(text)
    };
    let url = fill(url, true, "url")?;
    let mut lines = Vec::with_capacity(headers.len() + 1);
    for (name, parts) in headers {
        let value = fill(parts, false, &format!("headers.{name}"))?;
        if value.contains(['\r', '\n']) {
            return Err(refuse(format!(
                "headers.{name}: the filled value holds a line break"
            )));
        }
        lines.push((name.clone(), value));
    }
    if !lines
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        lines.push(("Content-Type".to_string(), "application/json".to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        url,
        headers: lines,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_filled_with_a_line_break_is_refused() {
        let headers = vec![(
            "X-User".to_string(),
            vec![Part::Template("{user}".to_string())],
        )];
        let fields = vec![("user".to_string(), SqlValue::Text("a\r\nX-Evil: 1".into()))];
        let url = [Part::Fixed("http://h/".to_string())];
        let failure =
            build_request("POST", &url, &headers, &fields, Vec::new()).expect_err("refused");
        assert!(failure.permanent && failure.error.contains("line break"));
    }

    #[test]
    fn url_placeholders_are_percent_encoded() {
        let fields = vec![("q".to_string(), SqlValue::Text("a b/c".into()))];
        let url = [
            Part::Fixed("http://h".to_string()),
            Part::Template("/items/{q}".to_string()),
        ];
        let request = build_request("PUT", &url, &[], &fields, Vec::new()).expect("built");
        assert_eq!(request.url, "http://h/items/a%20b%2Fc");
        assert!(
            request
                .headers
                .contains(&("Content-Type".to_string(), "application/json".to_string()))
        );
    }
}
