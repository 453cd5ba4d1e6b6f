//! The server's caches as `warm` and `purge` jobs act on them.

use super::app::DynamicApp;
use super::jobs::maintenance::{Boxed, Maintenance};

impl Maintenance for DynamicApp {
    fn warm<'a>(&'a self, url: &'a str) -> Boxed<'a, Result<(), String>> {
        Box::pin(super::cached::warm(self, url))
    }

    fn purge(&self, tags: Vec<String>) -> Boxed<'_, Result<usize, String>> {
        Box::pin(async move {
            let cache = self
                .cache
                .as_ref()
                .ok_or_else(|| "purge: no route is cached ([route.cache])".to_string())?;
            Ok(cache.invalidate(&tags).await)
        })
    }
}
