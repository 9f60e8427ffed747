//! Command logs (JSONL) into `activity`. Command text is redacted before it
//! reaches the lake.

use serde::Deserialize;

use super::json::{self, Scalar};
use super::{FileCtx, Parsed, Reject, RejectReason};
use crate::lake::tables::{ActivityRow, Id, Str, Table};
use crate::model::ids;
use crate::model::redact::{cut, redact};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Record<'a> {
    #[serde(borrow)]
    timestamp: Scalar<'a>,
    #[serde(borrow)]
    user: Scalar<'a>,
    #[serde(borrow)]
    activity_type: Scalar<'a>,
    #[serde(borrow)]
    command: Scalar<'a>,
    #[serde(borrow)]
    pattern_name: Scalar<'a>,
    #[serde(borrow)]
    duration_seconds: Scalar<'a>,
    #[serde(borrow)]
    exit_code: Scalar<'a>,
}

pub fn parse<'p>(ctx: &FileCtx, text: &str) -> Parsed<'p> {
    parse_record(ctx, text)
        .unwrap_or_else(|r| Parsed::Reject(Table::Activity, r.format("commands_jsonl")))
}

fn parse_record<'p>(ctx: &FileCtx, text: &str) -> Result<Parsed<'p>, Reject> {
    if !text.trim_start().starts_with('{') {
        return Err(Reject::line(
            RejectReason::UnrecognizedLine,
            "unrecognized line: command logs are JSON Lines",
        ));
    }
    let rec: Record = serde_json::from_str(text).map_err(|e| json::syntax_error(&e))?;
    let ts = json::timestamp("timestamp", &rec.timestamp, ctx.tz)?;
    let dated = |r: Reject| r.at(Some(ts));
    let activity_type = match json::text(&rec.activity_type).as_deref() {
        Some(t @ ("command" | "pattern" | "operation")) => Str::from(t),
        Some(other) => {
            return Err(dated(Reject::value(
                "activity_type",
                format!("{:?} is not command, pattern or operation", cut(other, 40)),
            )));
        }
        None => return Err(dated(Reject::missing("activity_type"))),
    };
    let duration = json::number("duration_seconds", &rec.duration_seconds).map_err(dated)?;
    if duration.is_some_and(|d| d < 0.0) {
        return Err(dated(Reject::value(
            "duration_seconds",
            "negative duration",
        )));
    }
    let exit_code = json::int32("exit_code", &rec.exit_code).map_err(dated)?;
    let (command, command_redacted) = match json::text(&rec.command) {
        Some(c) => {
            let red = redact(&c);
            let changed = red != c;
            (Some(red.into_owned()), changed)
        }
        None => (None, false),
    };
    let user_id = json::text(&rec.user).map(|u| Str::from(cut(&u, 128)));
    Ok(Parsed::Activity(ActivityRow {
        event_id: Id(ids::line_base_id(
            "activity",
            &ctx.vm_id,
            Some(ts.0),
            text.as_bytes(),
        )),
        ts,
        customer_id: ctx.customer_id.clone(),
        vm_id: ctx.vm_id.clone(),
        user_id,
        activity_type,
        command,
        command_redacted,
        pattern_name: json::text(&rec.pattern_name).map(|p| p.into_owned()),
        duration_seconds: duration,
        exit_code,
        source_file: ctx.rel.clone(),
        source_line: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::test_util::{ctx, ts};
    use crate::ingest::parse::{SourceKind, parse_line};

    fn parse(line: &str) -> Parsed<'static> {
        // Leaked: a parsed line may borrow from its context and its text.
        let ctx: &'static FileCtx = Box::leak(Box::new(ctx(SourceKind::Commands)));
        let line: &'static str = Box::leak(line.to_owned().into_boxed_str());
        parse_line(ctx, line.as_bytes())
    }

    #[test]
    fn command_records_are_redacted() {
        let Parsed::Activity(r) = parse(
            r#"{"timestamp":"2026-10-01T09:00:00Z","user":"alice","activity_type":"command","command":"export OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz","pattern_name":null,"duration_seconds":0.25,"exit_code":0}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            r.command.as_deref(),
            Some("export OPENAI_API_KEY=[REDACTED]")
        );
        assert!(r.command_redacted);
        assert_eq!(
            (r.ts, r.user_id.as_deref(), r.duration_seconds, r.exit_code),
            (
                ts("2026-10-01T09:00:00Z"),
                Some("alice"),
                Some(0.25),
                Some(0)
            )
        );
        let Parsed::Activity(r) = parse(
            r#"{"timestamp":"2026-10-01T09:00:00Z","user":"bob","activity_type":"pattern","command":null,"pattern_name":"deploy","duration_seconds":12,"exit_code":1}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            (
                &*r.activity_type,
                r.pattern_name.as_deref(),
                r.command_redacted
            ),
            ("pattern", Some("deploy"), false)
        );
    }

    #[test]
    fn rejects_name_the_field() {
        let field = |line: &str| match parse(line) {
            Parsed::Reject(Table::Activity, r) => r.field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(r#"{"user":"a","activity_type":"command"}"#),
            Some("timestamp")
        );
        assert_eq!(
            field(r#"{"timestamp":"2026-10-01T09:00:00Z","activity_type":"dance"}"#),
            Some("activity_type")
        );
        assert_eq!(
            field(
                r#"{"timestamp":"2026-10-01T09:00:00Z","activity_type":"command","exit_code":"x"}"#
            ),
            Some("exit_code")
        );
        assert_eq!(field("not json"), None);
    }
}
