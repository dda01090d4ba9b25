//! The window functions analysts write in `GROUP BY`, and what they declare.
//!
//! ```sql
//! GROUP BY tumble(ts, INTERVAL '1 minute'), service          -- fixed, back to back
//! GROUP BY hop(ts, INTERVAL '5 minutes', INTERVAL '1 minute') -- 5-minute windows every minute
//! GROUP BY session(ts, INTERVAL '2 minutes'), host            -- a burst ends after 2 quiet minutes
//! ```
//!
//! The value of the window column in a row is the window's start (for a session, its
//! first event). The functions only mark the window for the planner: Lookout's windowed
//! aggregation ([`super::windowed`]) assigns rows to windows itself. `tumble` also works
//! as a plain function (the start of the row's window); `hop` and `session` have no value
//! for a single row and fail outside a windowed `GROUP BY`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, TimestampMillisecondArray};
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// A window declared in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Back-to-back windows of `size` ms.
    Tumble { size: i64 },
    /// Windows of `size` ms starting every `slide` ms (a row is in `size / slide` of them).
    Hop { size: i64, slide: i64 },
    /// Per key, events closer than `gap` ms belong to one window.
    Session { gap: i64 },
}

impl WindowKind {
    /// The window in words, for `lookout explain`.
    pub fn describe(&self) -> String {
        match self {
            WindowKind::Tumble { size } => format!("tumbling, {}", human(*size)),
            WindowKind::Hop { size, slide } => format!("hopping, {} every {}", human(*size), human(*slide)),
            WindowKind::Session { gap } => format!("session, closes after {} without events", human(*gap)),
        }
    }
}

/// Milliseconds as the shortest readable duration (`90s`, `5m`, `1h`).
pub fn human(ms: i64) -> String {
    for (unit, n) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms % n == 0 {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `2d`, `90 seconds`, `1 minute` into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (write 30s, 5m, 1h, 2d or 500ms)"))?;
    let per = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "second" | "seconds" => 1_000,
        "m" | "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit (use ms, s, m, h or d)")),
    };
    n.checked_mul(per).ok_or_else(|| format!("{s:?} is too long"))
}

/// The window of a `GROUP BY` expression, if it is a call to a window function.
/// `Some(Err)` is a window function written wrongly.
pub fn window_of(e: &Expr) -> Option<Result<(WindowKind, Expr), String>> {
    let Expr::ScalarFunction(f) = e.clone().unalias() else {
        return None;
    };
    let name = f.func.name().to_string();
    if !WINDOW_FUNCTIONS.contains(&name.as_str()) {
        return None;
    }
    let durations: Result<Vec<i64>, String> = f.args.iter().skip(1).map(literal_duration).collect();
    let kind = match (name.as_str(), durations) {
        (_, Err(e)) => Err(e),
        ("tumble", Ok(d)) if d.len() == 1 => Ok(WindowKind::Tumble { size: d[0] }),
        ("hop", Ok(d)) if d.len() == 2 => {
            let (size, slide) = (d[0], d[1]);
            if size % slide != 0 {
                Err(format!(
                    "hop: the size ({}) must be a whole number of slides ({})",
                    human(size),
                    human(slide)
                ))
            } else if size / slide > 60 {
                Err("hop: at most 60 windows per row (size / slide)".to_string())
            } else {
                Ok(WindowKind::Hop { size, slide })
            }
        }
        ("session", Ok(d)) if d.len() == 1 => Ok(WindowKind::Session { gap: d[0] }),
        (n, _) => Err(format!(
            "{n}: write {}",
            match n {
                "tumble" => "tumble(ts, INTERVAL '1 minute')",
                "hop" => "hop(ts, INTERVAL '5 minutes', INTERVAL '1 minute')",
                _ => "session(ts, INTERVAL '2 minutes')",
            }
        )),
    };
    Some(kind.map(|k| (k, f.args[0].clone())))
}

pub const WINDOW_FUNCTIONS: [&str; 3] = ["tumble", "hop", "session"];

/// A duration argument: an interval literal or a string such as `'1m'`.
fn literal_duration(e: &Expr) -> Result<i64, String> {
    let ms = match e.clone().unalias() {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds)
        }
        Expr::Literal(ScalarValue::Utf8(Some(s)), _) => parse_duration(&s)?,
        other => {
            return Err(format!(
                "window durations are literals such as INTERVAL '1 minute' or '30s', not {other}"
            ))
        }
    };
    if ms <= 0 {
        return Err("window durations must be positive (months are not allowed)".into());
    }
    Ok(ms)
}

/// The UDFs that make `tumble`, `hop` and `session` plannable.
pub fn functions() -> Vec<ScalarUDF> {
    WINDOW_FUNCTIONS
        .iter()
        .map(|name| {
            ScalarUDF::new_from_impl(WindowUdf {
                name,
                signature: Signature::variadic_any(Volatility::Immutable),
            })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct WindowUdf {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for WindowUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match args.first() {
            Some(DataType::Timestamp(_, tz)) => Ok(DataType::Timestamp(TimeUnit::Millisecond, tz.clone())),
            Some(other) => exec_err!("{}: the first argument is the time column, not {other}", self.name),
            None => exec_err!("{}: the first argument is the time column", self.name),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if self.name != "tumble" {
            return exec_err!(
                "{}() only makes windows in the GROUP BY of a signal or alert file",
                self.name
            );
        }
        let size = match args.args.get(1) {
            Some(ColumnarValue::Scalar(s)) => literal_duration(&Expr::Literal(s.clone(), None)),
            _ => Err("tumble(ts, INTERVAL '1 minute')".to_string()),
        };
        let size = match size {
            Ok(s) => s,
            Err(e) => return exec_err!("{e}"),
        };
        let ts = args.args[0].to_array(args.number_rows)?;
        let tz = match ts.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let ts = arrow::compute::cast(&ts, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let ts = ts
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .expect("cast to milliseconds");
        let out: TimestampMillisecondArray = ts.iter().map(|t| t.map(|t| t - t.rem_euclid(size))).collect();
        let out = out.with_timezone_opt(tz);
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("1 minute"), Ok(60_000));
        assert_eq!(parse_duration("2 hours"), Ok(7_200_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(human(300_000), "5m");
        assert_eq!(human(90_000), "90s");
        assert_eq!(human(1_500), "1500ms");
    }
}
