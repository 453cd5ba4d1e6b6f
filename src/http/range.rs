//! Byte ranges (RFC 9110 §14): parsing `Range`, and the policy that refuses
//! to amplify abusive requests.

/// What to send for a `Range` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeOutcome {
    /// Ignore the header and send the whole representation (status 200).
    Full,
    /// Send these half-open byte ranges (status 206).
    Partial(Vec<std::ops::Range<u64>>),
    /// No range overlaps the representation (status 416).
    Unsatisfiable,
}

/// Evaluates a `Range` header against a representation of `len` bytes.
///
/// Syntax errors and units other than `bytes` are ignored (the server may
/// ignore `Range`). More than `max_ranges` ranges, overlapping ranges, or
/// ranges adding up to more than the whole are answered with the whole
/// representation instead of amplifying the response. A non-zero suffix
/// of an empty representation is satisfiable (RFC 9110 §14.1.2) but has no
/// bytes to send, so it gets the whole (empty) representation, not 416.
pub(crate) fn evaluate(header: &[u8], len: u64, max_ranges: usize) -> RangeOutcome {
    let Some(specs) = std::str::from_utf8(header)
        .ok()
        .and_then(|text| text.trim().strip_prefix("bytes="))
    else {
        return RangeOutcome::Full;
    };
    let mut ranges = Vec::new();
    let mut count = 0;
    let mut empty = false;
    for spec in specs.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        count += 1;
        if count > max_ranges {
            return RangeOutcome::Full;
        }
        match parse_spec(spec, len) {
            Spec::Invalid => return RangeOutcome::Full,
            Spec::Unsatisfiable => {}
            Spec::Empty => empty = true,
            Spec::Range(range) => ranges.push(range),
        }
    }
    if count == 0 {
        return RangeOutcome::Full;
    }
    if ranges.is_empty() {
        return if empty {
            RangeOutcome::Full
        } else {
            RangeOutcome::Unsatisfiable
        };
    }
    if is_abusive(&ranges, len) {
        return RangeOutcome::Full;
    }
    RangeOutcome::Partial(ranges)
}

enum Spec {
    Range(std::ops::Range<u64>),
    /// Satisfiable, yet selecting no bytes: a suffix of an empty
    /// representation.
    Empty,
    Unsatisfiable,
    Invalid,
}

fn parse_spec(spec: &str, len: u64) -> Spec {
    let Some((first, last)) = spec.split_once('-') else {
        return Spec::Invalid;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.is_empty(), last.is_empty()) {
        // `-N`: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => Spec::Unsatisfiable,
            Some(suffix) if len > 0 => Spec::Range(len.saturating_sub(suffix)..len),
            Some(_) => Spec::Empty,
            None => Spec::Invalid,
        },
        // `N-`: from N to the end.
        (false, true) => match number(first) {
            Some(start) if start < len => Spec::Range(start..len),
            Some(_) => Spec::Unsatisfiable,
            None => Spec::Invalid,
        },
        // `N-M`: inclusive.
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start > end => Spec::Invalid,
            (Some(start), Some(_)) if start >= len => Spec::Unsatisfiable,
            (Some(start), Some(end)) => Spec::Range(start..end.min(len - 1) + 1),
            _ => Spec::Invalid,
        },
        (true, true) => Spec::Invalid,
    }
}

/// Overlapping ranges, or more bytes requested than the file holds, only
/// serve to make the response larger than the file.
fn is_abusive(ranges: &[std::ops::Range<u64>], len: u64) -> bool {
    // Saturating: many ranges of a huge representation must not overflow.
    let total = ranges.iter().fold(0u64, |total, range| {
        total.saturating_add(range.end - range.start)
    });
    if total > len {
        return true;
    }
    let mut sorted: Vec<_> = ranges.to_vec();
    sorted.sort_by_key(|range| range.start);
    sorted.windows(2).any(|pair| pair[1].start < pair[0].end)
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use RangeOutcome::*;

    fn eval(header: &str, len: u64) -> RangeOutcome {
        evaluate(header.as_bytes(), len, 16)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(eval("bytes=0-99", 1000), Partial(vec![0..100]));
        assert_eq!(eval("bytes=900-", 1000), Partial(vec![900..1000]));
        assert_eq!(eval("bytes=-100", 1000), Partial(vec![900..1000]));
        assert_eq!(eval("bytes=-5000", 1000), Partial(vec![0..1000]));
        assert_eq!(eval("bytes=990-2000", 1000), Partial(vec![990..1000]));
        assert_eq!(eval("bytes= 0 - 0 ", 1000), Partial(vec![0..1]));
    }

    #[test]
    fn multiple_ranges() {
        assert_eq!(eval("bytes=0-9, 20-29", 100), Partial(vec![0..10, 20..30]));
        assert_eq!(eval("bytes=0-9, 500-600", 100), Partial(vec![0..10]));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(eval("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(eval("bytes=1000-1001", 1000), Unsatisfiable);
        assert_eq!(eval("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(eval("bytes=0-", 0), Unsatisfiable);
    }

    #[test]
    fn invalid_headers_are_ignored() {
        for header in [
            "bytes=5-1",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "0-1",
            "bytes=1",
            "bytes=,",
        ] {
            assert_eq!(eval(header, 1000), Full, "{header}");
        }
    }

    #[test]
    fn abusive_requests_get_the_whole_file() {
        let many = format!(
            "bytes={}",
            (0..17)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(eval(&many, 10_000), Full);
        assert_eq!(eval("bytes=0-499, 400-999", 1000), Full, "overlap");
        assert_eq!(eval("bytes=0-, 0-", 1000), Full, "sum past the size");
        assert_eq!(eval("bytes=0-0, 0-0", 1000), Full, "duplicate");
    }
}
