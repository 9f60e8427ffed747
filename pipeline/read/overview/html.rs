//! The report as one self-contained HTML page: inline CSS, inline SVG
//! charts, no script, no font, image or link fetched from anywhere. Every
//! chart is followed by a table with the same figures (its text
//! alternative); every text from outside (customer names from the
//! registry, model names from the logs) is escaped. Chart geometry is
//! computed in `rust_decimal` and rounded to whole pixels ([`scale`]).
//!
//! The page depends only on the figures: the same inputs give the same
//! bytes (no clock reading but the as-of date of a month in progress).

use std::fmt::Write as _;

use rust_decimal::{Decimal, RoundingStrategy};

use super::figures::Mover;
use super::format::{code_spans, count, grouped, money, percent, signed_money, signed_percent};
use super::{BilledFrom, Overview};

/// Colors: provider cost, billed revenue, projection, increase, decrease,
/// needs attention. The Chromium check looks for the first two in the
/// screenshot.
pub const COST: &str = "#2f6db5";
pub const REVENUE: &str = "#2a9d78";
pub const PROJECTED: &str = "#a9c4e6";
pub const UP: &str = "#d9822b";
pub const DOWN: &str = "#5b7a99";
pub const ALERT: &str = "#b3261e";

/// Escapes text for HTML content and attribute values (and inline SVG).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A note (an attention item or a notice) as HTML: escaped, its Markdown
/// code spans (`meter ...`) as `<code>`.
pub fn note(s: &str) -> String {
    code_spans(s)
        .into_iter()
        .map(|(code, text)| match code {
            true => format!("<code>{}</code>", esc(text)),
            false => esc(text),
        })
        .collect()
}

/// The length in whole pixels of `value` on a scale where `max` is `px`
/// long: rounded half away from zero, never below 0 nor above `px` (a value
/// above the scale, a negative value or an empty scale cannot overflow the
/// chart).
pub fn scale(value: Decimal, max: Decimal, px: u32) -> u32 {
    if max <= Decimal::ZERO || value <= Decimal::ZERO {
        return 0;
    }
    if value >= max {
        return px;
    }
    let ratio = value / max;
    (ratio * Decimal::from(px))
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
        .mantissa()
        .clamp(0, i128::from(px)) as u32
}

/// The smallest of 1, 2, 2.5, 5 x 10^k at or above `max` (1 for zero and
/// less): an axis that ends on a round number.
pub fn nice_max(max: Decimal) -> Decimal {
    if max <= Decimal::ZERO {
        return Decimal::ONE;
    }
    let ten = Decimal::TEN;
    let mut p = Decimal::ONE;
    while p * ten <= max {
        p *= ten;
    }
    let tiny = Decimal::new(1, 20);
    while p > max && p > tiny {
        p /= ten;
    }
    for m in ["1", "2", "2.5", "5", "10"] {
        let candidate = p * m.parse::<Decimal>().expect("a decimal");
        if candidate >= max {
            return candidate.normalize();
        }
    }
    (p * ten).normalize()
}

/// An axis label: whole numbers without places, else two.
fn tick(v: Decimal, currency: &str) -> String {
    let places = if v.fract().is_zero() { 0 } else { 2 };
    format!("{} {currency}", grouped(v, places))
}

fn month_name(o: &Overview) -> String {
    o.period.start.format("%B %Y").to_string()
}

/// The whole page.
pub fn page(o: &Overview) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!("Usage and margin report, {}", month_name(o));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} ({})</title>\n<style>\n{}</style>\n</head>\n<body>\n",
        esc(&title),
        esc(&o.month),
        CSS
    );
    header(&mut h, o, &title);
    kpis(&mut h, o);
    attention(&mut h, o);
    customers(&mut h, o);
    models(&mut h, o);
    daily(&mut h, o);
    movers(&mut h, o);
    contracts(&mut h, o);
    unpriced(&mut h, o);
    silent(&mut h, o);
    method(&mut h, o);
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

const CSS: &str = r#"@page { size: A4; margin: 14mm 12mm; }
:root { --ink: #1d2733; --muted: #5d6b7a; --line: #d5dce4; --band: #f3f6f9; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans", sans-serif; }
main { max-width: 1000px; margin: 0 auto; padding: 28px 32px 40px; }
header.top { border-bottom: 3px solid #2f6db5; padding-bottom: 14px; margin-bottom: 18px; }
header.top .kicker { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: var(--muted); margin: 0; }
h1 { font-size: 26px; margin: 2px 0 6px; font-weight: 650; }
h2 { font-size: 18px; margin: 30px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); font-weight: 650; }
h3 { font-size: 14px; margin: 16px 0 6px; color: var(--muted); font-weight: 600; }
p { margin: 6px 0; }
.meta { color: var(--muted); font-size: 13px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
  background: #e6eef8; color: #1f4f8a; margin-right: 6px; }
.badge.warn { background: #fbe9e7; color: #b3261e; }
.badge.ok { background: #e3f4ee; color: #1d6e53; }
.kpis { display: grid; grid-template-columns: repeat(3, 1fr); gap: 10px; margin: 8px 0 4px; }
.kpi { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; background: var(--band); break-inside: avoid; }
.kpi.warn { border-color: #e3a39d; background: #fdf3f2; }
.kpi .label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.kpi .value { font-size: 21px; font-weight: 650; font-variant-numeric: tabular-nums; white-space: nowrap; }
.kpi .sub { font-size: 12px; color: var(--muted); }
.callout { border-left: 4px solid #b3261e; background: #fdf3f2; padding: 8px 12px; margin: 14px 0; break-inside: avoid; }
.callout h2 { border: 0; margin: 0 0 4px; font-size: 15px; color: #b3261e; }
.callout ul, .notes ul { margin: 4px 0; padding-left: 18px; }
.notes { font-size: 12.5px; color: var(--muted); }
figure { margin: 8px 0 6px; break-inside: avoid; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { font-size: 12.5px; color: var(--muted); margin-top: 2px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 4px; font-size: 12.5px; }
caption { text-align: left; font-size: 12.5px; color: var(--muted); padding: 0 0 4px; }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { text-align: left; font-weight: 600; border-bottom: 2px solid #9fb0c2; background: var(--band); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
tfoot td { font-weight: 650; border-top: 2px solid #9fb0c2; border-bottom: 0; }
.neg { color: #b3261e; }
td .sub { display: block; font-size: 11.5px; color: var(--muted); font-weight: 400; }
table.narrow { width: auto; min-width: 50%; }
#t-customers { font-size: 12px; }
#t-customers td:first-child { min-width: 150px; }
.muted { color: var(--muted); }
code { font: 0.92em ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
  background: var(--band); padding: 0 3px; border-radius: 3px; }
.legend { font-size: 12px; color: var(--muted); margin: 2px 0; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 10px; vertical-align: -1px; }
footer { margin-top: 30px; font-size: 12px; color: var(--muted); border-top: 1px solid var(--line); padding-top: 8px; }
@media print {
  body { font-size: 10pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  table { break-inside: auto; }
  tr { break-inside: avoid; }
}
"#;

fn header(h: &mut String, o: &Overview, title: &str) {
    let p = &o.period;
    let status = match p.in_progress {
        None => format!(
            "<span class=\"badge ok\">Month complete</span>{} days",
            p.days_in_month
        ),
        Some(as_of) => format!(
            "<span class=\"badge\">In progress</span>{} of {} days complete, as of {}",
            p.complete_days,
            p.days_in_month,
            esc(&as_of.to_string())
        ),
    };
    let billed = match &o.billed_from {
        BilledFrom::Revision { revision } => format!(
            "<span class=\"badge ok\">Invoiced</span>billed amounts from invoice revision {revision}"
        ),
        BilledFrom::Preview {
            published_revision: None,
        } => "<span class=\"badge warn\">Not billed yet</span>billed amounts \
             are a preview: billing's rules run on the figures below, nothing published"
            .to_string(),
        BilledFrom::Preview {
            published_revision: Some(revision),
        } => format!(
            "<span class=\"badge\">Month so far</span>billed amounts are a preview of the same days: \
             billing's rules run on the figures below; invoice revision {revision} bills the whole \
             month and is not compared here"
        ),
    };
    let _ = write!(
        h,
        "<main>\n<header class=\"top\">\n<p class=\"kicker\">meter &middot; month at a glance &middot; {}</p>\n\
         <h1>{}</h1>\n<p class=\"meta\">{status}</p>\n<p class=\"meta\">{billed}</p>\n\
         <p class=\"meta\">Amounts in {} (the price list's currency) unless marked; invoice totals in the \
         invoice's currency.{}</p>\n</header>\n",
        esc(&o.month),
        esc(title),
        esc(&o.currency),
        o.fx.iter()
            .map(|r| format!(
                " Converted at 1 {} = {} {} ({}).",
                esc(&r.from),
                esc(&r.rate.normalize().to_string()),
                esc(&r.to),
                esc(&r.how)
            ))
            .collect::<String>()
    );
}

fn kpi(h: &mut String, label: &str, value: &str, sub: &str, warn: bool) {
    let _ = writeln!(
        h,
        "<div class=\"kpi{}\"><div class=\"label\">{}</div><div class=\"value\">{}</div><div class=\"sub\">{}</div></div>",
        if warn { " warn" } else { "" },
        esc(label),
        esc(value),
        esc(sub)
    );
}

fn kpis(h: &mut String, o: &Overview) {
    let c = o.currency.as_str();
    let t = &o.totals;
    h.push_str("<section aria-labelledby=\"h-glance\">\n<h2 id=\"h-glance\">At a glance</h2>\n<div class=\"kpis\">\n");
    kpi(
        h,
        "Provider cost",
        &money(t.cost, c),
        &format!("{} requests, {} tokens", count(t.requests), count(t.tokens)),
        false,
    );
    let billed: Vec<String> = t.billed.iter().map(|(cur, v)| money(*v, cur)).collect();
    kpi(
        h,
        "Billed",
        &money(t.revenue, c),
        &if billed.is_empty() {
            "nothing billed".to_string()
        } else {
            billed.join(" + ")
        },
        false,
    );
    kpi(
        h,
        "Margin",
        &money(t.margin, c),
        &t.margin_percent
            .map(|m| format!("{} of billed", percent(m)))
            .unwrap_or_else(|| "nothing billed".into()),
        t.margin.is_sign_negative() && !t.margin.is_zero(),
    );
    match &o.projection {
        Some(p) => kpi(
            h,
            "Projected month-end cost",
            &money(p.month_end, c),
            &format!(
                "{} a day x {} remaining days",
                money(p.daily_average, c),
                p.remaining_days
            ),
            false,
        ),
        None => kpi(
            h,
            &format!("Cost vs {}", o.previous.month),
            &if o.previous.rolled_up {
                signed_money(t.cost - o.previous.cost, c)
            } else {
                "no data".to_string()
            },
            &if o.previous.rolled_up {
                format!(
                    "{} before{}",
                    money(o.previous.cost, c),
                    o.previous
                        .change_percent
                        .map(|p| format!(", {}", signed_percent(p)))
                        .unwrap_or_default()
                )
            } else {
                format!("{} has no rolled-up usage", o.previous.month)
            },
            false,
        ),
    }
    kpi(
        h,
        "Unpriced usage",
        &format!("{} requests", count(t.unpriced_requests)),
        &format!("{} tokens billed to nobody", count(t.unpriced_tokens)),
        t.unpriced_requests > 0,
    );
    let vms = o
        .silent_vms
        .iter()
        .map(|v| &v.vm_id)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    kpi(
        h,
        "Silent VMs",
        &vms.to_string(),
        if vms == 0 {
            "every VM kept sending"
        } else {
            "sent nothing for a day or more"
        },
        vms > 0,
    );
    h.push_str("</div>\n</section>\n");
}

fn attention(h: &mut String, o: &Overview) {
    if !o.attention.is_empty() {
        h.push_str("<section class=\"callout\" aria-labelledby=\"h-attention\">\n<h2 id=\"h-attention\">Needs attention</h2>\n<ul>\n");
        for a in &o.attention {
            let _ = writeln!(h, "<li>{}</li>", note(a));
        }
        h.push_str("</ul>\n</section>\n");
    }
    if !o.notices.is_empty() {
        h.push_str("<section class=\"notes\" aria-label=\"Notes\">\n<ul>\n");
        for n in &o.notices {
            let _ = writeln!(h, "<li>{}</li>", note(n));
        }
        h.push_str("</ul>\n</section>\n");
    }
}

/// A table: header cells (`num` marks right-aligned columns), rows, an
/// optional footer row. A cell's lines after the first are shown smaller,
/// under it.
fn html_table(
    h: &mut String,
    id: &str,
    caption: &str,
    header: &[(&str, bool)],
    rows: &[Vec<String>],
    footer: Option<Vec<String>>,
) {
    let _ = write!(
        h,
        "<table id=\"{}\"{}>\n<caption>{}</caption>\n<thead><tr>",
        esc(id),
        if header.len() <= 3 {
            " class=\"narrow\""
        } else {
            ""
        },
        esc(caption)
    );
    for (name, num) in header {
        let _ = write!(
            h,
            "<th scope=\"col\"{}>{}</th>",
            if *num { " class=\"num\"" } else { "" },
            esc(name)
        );
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    let row = |h: &mut String, cells: &[String]| {
        h.push_str("<tr>");
        for (cell, (_, num)) in cells.iter().zip(header) {
            let class = match (num, cell.starts_with('-') && cell.len() > 1) {
                (true, true) => " class=\"num neg\"",
                (true, false) => " class=\"num\"",
                _ => "",
            };
            let mut lines = cell.split('\n');
            let _ = write!(h, "<td{class}>{}", esc(lines.next().unwrap_or_default()));
            for more in lines {
                let _ = write!(h, "<span class=\"sub\">{}</span>", esc(more));
            }
            h.push_str("</td>");
        }
        h.push_str("</tr>\n");
    };
    for r in rows {
        row(h, r);
    }
    h.push_str("</tbody>\n");
    if let Some(f) = footer {
        h.push_str("<tfoot>");
        row(h, &f);
        h.push_str("</tfoot>\n");
    }
    h.push_str("</table>\n");
}

/// One bar of a horizontal chart: a label, bars (value, color) and the
/// text after them.
struct BarRow {
    label: String,
    /// Value, color, the text after the bar.
    bars: Vec<(Decimal, &'static str, String)>,
}

/// A horizontal bar chart, one row per item, all bars on one scale.
fn bar_chart(h: &mut String, id: &str, title: &str, desc: &str, rows: &[BarRow]) {
    const W: u32 = 880;
    const LABEL: u32 = 250;
    const AREA: u32 = 420;
    const BAR: u32 = 14;
    const GAP: u32 = 3;
    let per_row = rows
        .iter()
        .map(|r| r.bars.len() as u32)
        .max()
        .unwrap_or(1)
        .max(1);
    let row_h = per_row * (BAR + GAP) + 12;
    let height = rows.len() as u32 * row_h + 8;
    let max = rows
        .iter()
        .flat_map(|r| r.bars.iter().map(|b| b.0))
        .max()
        .unwrap_or_default();
    let _ = write!(
        h,
        "<svg id=\"{id}\" viewBox=\"0 0 {W} {height}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" \
         font-family=\"system-ui, sans-serif\" font-size=\"13\">\n\
         <title id=\"{id}-t\">{}</title>\n<desc id=\"{id}-d\">{}</desc>\n",
        esc(title),
        esc(desc)
    );
    let _ = writeln!(
        h,
        "<line x1=\"{LABEL}\" y1=\"0\" x2=\"{LABEL}\" y2=\"{height}\" stroke=\"#9fb0c2\" stroke-width=\"1\"/>"
    );
    for (i, r) in rows.iter().enumerate() {
        let top = i as u32 * row_h + 8;
        let mid = top + (r.bars.len() as u32 * (BAR + GAP)) / 2 + 4;
        let _ = writeln!(
            h,
            "<text x=\"{}\" y=\"{mid}\" text-anchor=\"end\" fill=\"#1d2733\">{}</text>",
            LABEL - 8,
            esc(&clip(&r.label, 32))
        );
        for (j, (value, color, note)) in r.bars.iter().enumerate() {
            let len = scale(*value, max, AREA);
            let y = top + j as u32 * (BAR + GAP);
            let _ = writeln!(
                h,
                "<rect x=\"{LABEL}\" y=\"{y}\" width=\"{len}\" height=\"{BAR}\" fill=\"{color}\" rx=\"2\"/>\
                 <text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#3b4856\">{}</text>",
                LABEL + len + 6,
                y + BAR - 3,
                esc(note)
            );
        }
    }
    h.push_str("</svg>\n");
}

/// At most `n` characters, with an ellipsis when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "\u{2026}"
    }
}

fn legend(h: &mut String, items: &[(&str, &str)]) {
    h.push_str("<p class=\"legend\" aria-hidden=\"true\">");
    for (color, label) in items {
        let _ = write!(
            h,
            "<span class=\"swatch\" style=\"background:{color}\"></span>{}",
            esc(label)
        );
    }
    h.push_str("</p>\n");
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "\u{2013}".into())
}

fn customers(h: &mut String, o: &Overview) {
    let c = o.currency.as_str();
    h.push_str("<section aria-labelledby=\"h-customers\">\n<h2 id=\"h-customers\">Spend by customer</h2>\n");
    legend(
        h,
        &[
            (COST, &format!("provider cost ({c})")),
            (REVENUE, &format!("billed ({c} equivalent)")),
        ],
    );
    let rows: Vec<BarRow> = o
        .customers
        .iter()
        .map(|l| BarRow {
            label: l.name.clone(),
            bars: vec![
                (l.cost, COST, money(l.cost, c)),
                match &l.billed {
                    Some(b) if b.currency == c => (b.converted, REVENUE, money(b.total, c)),
                    Some(b) => (
                        b.converted,
                        REVENUE,
                        format!(
                            "{} = {}",
                            money(b.total, &b.currency),
                            money(b.converted, c)
                        ),
                    ),
                    None => (Decimal::ZERO, REVENUE, "not billed".to_string()),
                },
            ],
        })
        .collect();
    h.push_str("<figure aria-describedby=\"t-customers\">\n");
    bar_chart(
        h,
        "c-customers",
        &format!("Provider cost and billed amount by customer, {}", o.month),
        "Two bars per customer: provider cost and the billed amount converted to the report currency. The table below lists the same figures.",
        &rows,
    );
    let _ = writeln!(
        h,
        "<figcaption>Provider cost and billed amount per customer, {c}; largest cost first.</figcaption>\n</figure>"
    );
    let projected = o.period.in_progress.is_some();
    let mut header: Vec<(&str, bool)> = vec![
        ("Customer", false),
        ("Requests", true),
        ("Tokens", true),
        ("Provider cost", true),
        ("Share", true),
    ];
    if projected {
        header.push(("Proj. month-end", true));
    }
    header.extend([("Billed", true), ("Margin", true), ("Margin %", true)]);
    let table_rows: Vec<Vec<String>> = o
        .customers
        .iter()
        .map(|l| {
            let mut r = vec![
                match l.customer_id.as_str() {
                    "" => l.name.clone(),
                    id => format!("{}\n{id}", l.name),
                },
                count(l.requests),
                count(l.tokens),
                money(l.cost, c),
                opt(l.cost_share_percent, percent),
            ];
            if projected {
                r.push(opt(l.projected_cost, |v| money(v, c)));
            }
            r.push(opt(l.billed.as_ref(), |b| {
                if b.currency == c {
                    money(b.total, &b.currency)
                } else {
                    format!(
                        "{}\n= {}",
                        money(b.total, &b.currency),
                        money(b.converted, c)
                    )
                }
            }));
            r.push(money(l.margin, c));
            r.push(opt(l.margin_percent, percent));
            r
        })
        .collect();
    let t = &o.totals;
    let mut footer = vec![
        "Total".to_string(),
        count(t.requests),
        count(t.tokens),
        money(t.cost, c),
        if t.cost.is_zero() {
            "\u{2013}".into()
        } else {
            "100.0%".into()
        },
    ];
    if projected {
        footer.push(opt(o.projection.as_ref(), |p| money(p.month_end, c)));
    }
    let mut billed: Vec<String> = t.billed.iter().map(|(cur, v)| money(*v, cur)).collect();
    billed.push(format!("= {}", money(t.revenue, c)));
    footer.push(billed.join("\n"));
    footer.push(money(t.margin, c));
    footer.push(opt(t.margin_percent, percent));
    html_table(
        h,
        "t-customers",
        &format!(
            "Spend by customer, {}: provider cost ({c}), billed amount (invoice currency and {c}), margin = billed in {c} minus provider cost",
            o.month
        ),
        &header,
        &table_rows,
        Some(footer),
    );
    h.push_str("</section>\n");
}

fn models(h: &mut String, o: &Overview) {
    let c = o.currency.as_str();
    h.push_str("<section aria-labelledby=\"h-models\">\n<h2 id=\"h-models\">Spend by model</h2>\n");
    let rows: Vec<BarRow> = o
        .models
        .iter()
        .map(|m| BarRow {
            label: format!("{} / {}", m.provider, m.model),
            bars: vec![(
                m.cost,
                COST,
                match m.unpriced_requests {
                    0 => money(m.cost, c),
                    n => format!("{} \u{b7} {} requests unpriced", money(m.cost, c), count(n)),
                },
            )],
        })
        .collect();
    h.push_str("<figure aria-describedby=\"t-models\">\n");
    bar_chart(
        h,
        "c-models",
        &format!("Provider cost by model, {}", o.month),
        "One bar per provider and model: its provider cost. The table below lists the same figures.",
        &rows,
    );
    let _ = writeln!(
        h,
        "<figcaption>Provider cost per model, {c}; unpriced requests have no cost and are not in the bars.</figcaption>\n</figure>"
    );
    let table_rows: Vec<Vec<String>> = o
        .models
        .iter()
        .map(|m| {
            vec![
                m.provider.clone(),
                m.model.clone(),
                count(m.requests),
                count(m.tokens),
                money(m.cost, c),
                opt(m.cost_share_percent, percent),
                count(m.unpriced_requests),
            ]
        })
        .collect();
    html_table(
        h,
        "t-models",
        &format!("Spend by model, {}, provider cost in {c}", o.month),
        &[
            ("Provider", false),
            ("Model", false),
            ("Requests", true),
            ("Tokens", true),
            ("Provider cost", true),
            ("Share", true),
            ("Unpriced requests", true),
        ],
        &table_rows,
        None,
    );
    h.push_str("</section>\n");
}

fn daily(h: &mut String, o: &Overview) {
    const W: u32 = 880;
    const LEFT: u32 = 84;
    const TOP: u32 = 14;
    const PLOT_H: u32 = 220;
    const BOTTOM: u32 = 40;
    let c = o.currency.as_str();
    let p = &o.period;
    let n = p.days_in_month.max(1);
    let slot = (W - LEFT - 12) / n;
    let bar = slot.saturating_sub(4).max(1);
    let height = TOP + PLOT_H + BOTTOM;
    let average = o.projection.as_ref().map(|p| p.daily_average);
    let peak = o
        .days
        .iter()
        .map(|d| d.cost)
        .chain(average)
        .max()
        .unwrap_or_default();
    let axis = nice_max(peak);
    h.push_str(
        "<section aria-labelledby=\"h-daily\">\n<h2 id=\"h-daily\">Daily provider cost</h2>\n",
    );
    let mut items = vec![(COST, "provider cost of a complete day".to_string())];
    if average.is_some() {
        items.push((PROJECTED, "projected at the daily average".to_string()));
    }
    let items: Vec<(&str, &str)> = items.iter().map(|(a, b)| (*a, b.as_str())).collect();
    legend(h, &items);
    h.push_str("<figure aria-describedby=\"t-daily\">\n");
    let _ = write!(
        h,
        "<svg id=\"c-daily\" viewBox=\"0 0 {W} {height}\" role=\"img\" aria-labelledby=\"c-daily-t c-daily-d\" \
         font-family=\"system-ui, sans-serif\" font-size=\"12\">\n\
         <title id=\"c-daily-t\">Provider cost per day, {}</title>\n<desc id=\"c-daily-d\">{}</desc>\n",
        esc(&o.month),
        esc(&match &o.projection {
            Some(pr) => format!(
                "One bar per complete day; the {} remaining days are drawn at the daily average of {}. The table below lists the same figures.",
                pr.remaining_days,
                money(pr.daily_average, c)
            ),
            None =>
                "One bar per day of the month. The table below lists the same figures.".to_string(),
        })
    );
    for q in 0..=4u32 {
        let value = axis * Decimal::from(q) / Decimal::from(4);
        let y = TOP + PLOT_H - scale(value, axis, PLOT_H);
        let _ = writeln!(
            h,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"1\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#5d6b7a\">{}</text>",
            LEFT + slot * n,
            if q == 0 { "#9fb0c2" } else { "#e3e8ee" },
            LEFT - 6,
            y + 4,
            esc(&tick(value, c))
        );
    }
    for (i, day) in p.start.iter_days().take(n as usize).enumerate() {
        let x = LEFT + i as u32 * slot + (slot - bar) / 2;
        let (value, color, dashed) = match o.days.iter().find(|d| d.date == day) {
            Some(d) => (d.cost, COST, false),
            None if i as u32 >= p.complete_days => match average {
                Some(a) => (a, PROJECTED, true),
                None => (Decimal::ZERO, COST, false),
            },
            None => (Decimal::ZERO, COST, false),
        };
        let bh = scale(value, axis, PLOT_H);
        let _ = writeln!(
            h,
            "<rect x=\"{x}\" y=\"{}\" width=\"{bar}\" height=\"{bh}\" fill=\"{color}\"{}/>",
            TOP + PLOT_H - bh,
            if dashed {
                format!(" stroke=\"{COST}\" stroke-width=\"1\" stroke-dasharray=\"3 2\"")
            } else {
                String::new()
            }
        );
        let label = chrono::Datelike::day(&day);
        if n <= 16 || label % 2 == 1 || i as u32 == n - 1 {
            let _ = writeln!(
                h,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5d6b7a\">{label}</text>",
                LEFT + i as u32 * slot + slot / 2,
                TOP + PLOT_H + 16
            );
        }
    }
    if let Some(a) = average {
        let y = TOP + PLOT_H - scale(a, axis, PLOT_H);
        let _ = writeln!(
            h,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{UP}\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{UP}\" font-weight=\"600\">daily average {}</text>",
            LEFT + slot * n,
            LEFT + slot * n,
            y.saturating_sub(6).max(TOP + 10),
            esc(&money(a, c))
        );
    }
    let _ = writeln!(
        h,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#5d6b7a\">day of {}</text>\n</svg>",
        LEFT + slot * n / 2,
        height - 6,
        esc(&month_name(o))
    );
    let _ = writeln!(
        h,
        "<figcaption>{}</figcaption>\n</figure>",
        esc(&match &o.projection {
            Some(pr) => format!(
                "{} to date over {} complete days; month-end projection {} ({} + {} a day x {} remaining days).",
                money(pr.to_date, c),
                pr.complete_days,
                money(pr.month_end, c),
                money(pr.to_date, c),
                money(pr.daily_average, c),
                pr.remaining_days
            ),
            None => format!(
                "Provider cost per day, {c}; the month is complete: actual figures, no projection."
            ),
        })
    );
    let rows: Vec<Vec<String>> = o
        .days
        .iter()
        .map(|d| vec![d.date.to_string(), count(d.requests), money(d.cost, c)])
        .collect();
    let mut footer = vec![
        "Total".to_string(),
        count(o.days.iter().map(|d| d.requests).sum()),
        money(o.totals.cost, c),
    ];
    if let Some(pr) = &o.projection {
        footer[0] = format!(
            "To date ({} days); projected month-end {}",
            pr.complete_days,
            money(pr.month_end, c)
        );
    }
    html_table(
        h,
        "t-daily",
        &format!("Provider cost per day, {} ({c})", o.month),
        &[("Date", false), ("Requests", true), ("Provider cost", true)],
        &rows,
        Some(footer),
    );
    h.push_str("</section>\n");
}

/// A diverging chart of changes on one scale: increases right of the axis,
/// decreases left; the axis sits at the zone's left edge when nothing
/// decreased, at its right edge when nothing increased. The figures are in
/// a column of their own on the right, clear of every bar.
fn change_chart(h: &mut String, id: &str, title: &str, rows: &[(String, &Mover)], c: &str) {
    const W: u32 = 880;
    const LABEL: u32 = 250;
    const NOTE: u32 = 200;
    const ROW: u32 = 24;
    let zone = W - LABEL - NOTE - 16;
    let ups = rows.iter().any(|(_, m)| m.change.is_sign_positive());
    let downs = rows.iter().any(|(_, m)| m.change.is_sign_negative());
    let (axis, reach) = match (ups, downs) {
        (true, true) => (LABEL + 8 + zone / 2, zone / 2),
        (true, false) => (LABEL + 8, zone),
        _ => (LABEL + 8 + zone, zone),
    };
    let height = rows.len() as u32 * ROW + 10;
    let max = rows
        .iter()
        .map(|(_, m)| m.change.abs())
        .max()
        .unwrap_or_default();
    let _ = write!(
        h,
        "<svg id=\"{id}\" viewBox=\"0 0 {W} {height}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" \
         font-family=\"system-ui, sans-serif\" font-size=\"13\">\n\
         <title id=\"{id}-t\">{}</title>\n<desc id=\"{id}-d\">Increases of provider cost to the right of the axis, \
         decreases to the left. The table below lists the same figures.</desc>\n",
        esc(title)
    );
    for (i, (label, m)) in rows.iter().enumerate() {
        let y = i as u32 * ROW + 6;
        let len = scale(m.change.abs(), max, reach);
        let up = m.change.is_sign_positive();
        let x = if up { axis } else { axis - len };
        let _ = writeln!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#1d2733\">{}</text>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{len}\" height=\"16\" fill=\"{}\" rx=\"2\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#3b4856\">{}</text>",
            LABEL - 8,
            y + 13,
            esc(&clip(label, 32)),
            if up { UP } else { DOWN },
            W - 8,
            y + 13,
            esc(&format!(
                "{}{}",
                signed_money(m.change, c),
                m.change_percent
                    .map(|p| format!(" ({})", signed_percent(p)))
                    .unwrap_or_else(|| " (new)".into())
            ))
        );
    }
    let _ = writeln!(
        h,
        "<line x1=\"{axis}\" y1=\"0\" x2=\"{axis}\" y2=\"{height}\" stroke=\"#5d6b7a\" stroke-width=\"1\"/>\n</svg>"
    );
}

fn movers(h: &mut String, o: &Overview) {
    let c = o.currency.as_str();
    let prev = &o.previous;
    let _ = writeln!(
        h,
        "<section aria-labelledby=\"h-movers\">\n<h2 id=\"h-movers\">Biggest movers against {}</h2>\n<p class=\"meta\">{}</p>",
        esc(&prev.month),
        esc(&if !prev.rolled_up {
            format!(
                "{} has no rolled-up usage in the lake: every cost is new, no percentage applies.",
                prev.month
            )
        } else {
            format!(
                "Provider cost of {} against {} days of {} ({}), like for like; the largest changes each way, at most five.",
                match o.period.in_progress {
                    Some(_) => format!("the {} complete days", o.period.complete_days),
                    None => "the month".to_string(),
                },
                prev.days,
                prev.month,
                money(prev.cost, c)
            )
        })
    );
    legend(h, &[(UP, "increase"), (DOWN, "decrease")]);
    let groups = [
        ("customers", "Customers", &o.customer_movers),
        ("models", "Models", &o.model_movers),
    ];
    for (id, name, m) in groups {
        let _ = writeln!(h, "<h3 id=\"h-movers-{id}\">{name}</h3>");
        let list: Vec<(String, &Mover)> =
            m.up.iter()
                .chain(&m.down)
                .map(|x| {
                    let label = match (id, x.key.as_str()) {
                        ("customers", "") => "(VMs no customer lists)".to_string(),
                        ("customers", k) => o.customer_name(k),
                        (_, k) => k.to_string(),
                    };
                    (label, x)
                })
                .collect();
        if list.is_empty() {
            h.push_str("<p class=\"muted\">No change.</p>\n");
            continue;
        }
        let _ = writeln!(h, "<figure aria-describedby=\"t-movers-{id}\">");
        change_chart(
            h,
            &format!("c-movers-{id}"),
            &format!(
                "Change of provider cost by {id}, {} against {}",
                o.month, prev.month
            ),
            &list,
            c,
        );
        h.push_str("</figure>\n");
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(label, m)| {
                vec![
                    label.clone(),
                    money(m.previous, c),
                    money(m.current, c),
                    signed_money(m.change, c),
                    m.change_percent
                        .map(signed_percent)
                        .unwrap_or_else(|| "new".into()),
                ]
            })
            .collect();
        html_table(
            h,
            &format!("t-movers-{id}"),
            &format!(
                "{name}: provider cost in {} and {}, change ({c})",
                prev.month, o.month
            ),
            &[
                (
                    if id == "customers" {
                        "Customer"
                    } else {
                        "Model"
                    },
                    false,
                ),
                ("Previous", true),
                ("Current", true),
                ("Change", true),
                ("Change %", true),
            ],
            &rows,
            None,
        );
    }
    h.push_str("</section>\n");
}

/// The contract lines and prepaid credit balances, when some customer has a
/// contract (schemas/contracts.md).
fn contracts(h: &mut String, o: &Overview) {
    if o.contracts.is_empty() && o.credits.is_empty() {
        return;
    }
    h.push_str(
        "<section aria-labelledby=\"h-contracts\">\n<h2 id=\"h-contracts\">Contracts</h2>\n\
         <p>Applied by meter in one order, each an invoice line: markup or tiers, discounts, the \
         commitment's true-up, prepaid credit.</p>\n",
    );
    if !o.contracts.is_empty() {
        let rows = o.contract_rows();
        html_table(
            h,
            "t-contracts",
            "Contract lines by customer, invoice currency",
            &[
                ("Customer", false),
                ("Discounts", true),
                ("Commitment true-up", true),
                ("Credit applied", true),
                ("Billed", true),
            ],
            &rows,
            None,
        );
    }
    if !o.credits.is_empty() {
        let rows = o.credit_rows();
        html_table(
            h,
            "t-credits",
            "Prepaid credit by grant, grant currency",
            &[
                ("Customer", false),
                ("Grant", false),
                ("Opening", true),
                ("Applied", true),
                ("Expired", true),
                ("Closing", true),
                ("Status", false),
            ],
            &rows,
            None,
        );
    }
    h.push_str("</section>\n");
}

fn unpriced(h: &mut String, o: &Overview) {
    h.push_str(
        "<section aria-labelledby=\"h-unpriced\">\n<h2 id=\"h-unpriced\">Unpriced usage</h2>\n",
    );
    if o.unpriced.is_empty() {
        h.push_str("<p>Every request has a price.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<p>Requests without a price carry no cost and are billed to nobody: an \"unpriced\" line on \
         the invoice states them. Add the price to pricing.toml, then roll up and bill the month again.</p>\n",
    );
    let rows: Vec<Vec<String>> = o
        .unpriced
        .iter()
        .map(|u| {
            vec![
                u.provider.clone(),
                u.model.clone(),
                u.reason.clone(),
                count(u.requests),
                count(u.tokens),
            ]
        })
        .collect();
    html_table(
        h,
        "t-unpriced",
        "Usage without a price, by model and reason",
        &[
            ("Provider", false),
            ("Model", false),
            ("Reason", false),
            ("Requests", true),
            ("Tokens", true),
        ],
        &rows,
        Some(vec![
            "Total".into(),
            String::new(),
            String::new(),
            count(o.totals.unpriced_requests),
            count(o.totals.unpriced_tokens),
        ]),
    );
    h.push_str("</section>\n");
}

fn silent(h: &mut String, o: &Overview) {
    h.push_str("<section aria-labelledby=\"h-silent\">\n<h2 id=\"h-silent\">Silent VMs</h2>\n");
    if o.silent_vms.is_empty() {
        h.push_str("<p>No VM fell silent: every VM that sent events in a week sent some the next day.</p>\n</section>\n");
        return;
    }
    h.push_str(
        "<p>A VM that sent events in the week before a day but nothing on the day: its usage may be \
         missing from the bill (log shipping broke, or the VM was stopped).</p>\n",
    );
    let rows: Vec<Vec<String>> = o
        .silent_vms
        .iter()
        .map(|v| {
            vec![
                v.vm_id.clone(),
                if v.customer_id.is_empty() {
                    "(no customer)".into()
                } else {
                    format!("{} {}", v.customer_id, o.customer_name(&v.customer_id))
                },
                v.last_seen.to_string(),
                v.first_silent.to_string(),
                v.last_silent.to_string(),
                v.days.to_string(),
            ]
        })
        .collect();
    html_table(
        h,
        "t-silent",
        "VMs silent on days of the month",
        &[
            ("VM", false),
            ("Customer", false),
            ("Last seen", false),
            ("Silent from", false),
            ("To", false),
            ("Days", true),
        ],
        &rows,
        None,
    );
    h.push_str("</section>\n");
}

fn method(h: &mut String, o: &Overview) {
    let c = esc(&o.currency);
    let billed = match &o.billed_from {
        BilledFrom::Revision { revision } => format!(
            "the invoice totals of revision {revision} (the one <code>latest.json</code> names), net of tax"
        ),
        BilledFrom::Preview { published_revision } => format!(
            "a preview: billing's own SQL run on the figures above, nothing published; \
             subscription fees are the whole month's{}",
            match published_revision {
                Some(revision) => format!(
                    ". The month so far is compared with this preview of the same days, not with \
                     invoice revision {revision}, which bills the whole month"
                ),
                None => String::new(),
            }
        ),
    };
    let _ = write!(
        h,
        "<section class=\"notes\" aria-labelledby=\"h-method\">\n<h2 id=\"h-method\">How the figures are made</h2>\n<ul>\n\
         <li><strong>Provider cost</strong>: the sum of the priced events' exact costs in {c}, from the lake's daily \
         aggregates (equal to the monthly ones to the last digit). Tokens are input, cache read, cache write and \
         output tokens.</li>\n\
         <li><strong>Billed</strong>: {billed}. Converted to {c} at the pricing.toml FX rate in force on the month's \
         last day, as billing converts (the opposite pair inverted to 8 places when only it is listed).</li>\n\
         <li><strong>Margin</strong>: billed in {c} minus provider cost; usage of VMs no customer lists is cost \
         without revenue.</li>\n\
         <li><strong>Projection</strong> (a month in progress): cost to date x days in the month / complete days, \
         that is the daily average of the complete days over the remaining days; complete days are those before \
         the as-of date. Exact decimals, rounded once for display, half away from zero.</li>\n\
         <li><strong>Movers</strong>: change of provider cost per customer and per model against the previous \
         month's same number of days (the whole month once this one is over).</li>\n\
         <li><strong>Silent VMs</strong>: checked on every complete day; VMs of a customer cancelled by then \
         are expected to be quiet and only noted.</li>\n\
         </ul>\n</section>\n\
         <footer>meter {} &middot; report for {} &middot; the same inputs give the same page.</footer>\n",
        esc(env!("CARGO_PKG_VERSION")),
        esc(&o.month)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::prelude::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"Co\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;Co&quot;"
        );
        assert_eq!(esc("Zeta Consulting, Inc."), "Zeta Consulting, Inc.");
    }

    #[test]
    fn notes_show_code_spans_as_code() {
        assert_eq!(
            note("run `meter bill --month 2026-10` for <Acme & Co>"),
            "run <code>meter bill --month 2026-10</code> for &lt;Acme &amp; Co&gt;"
        );
        assert_eq!(
            note("`<script>` it's `open"),
            "<code>&lt;script&gt;</code> it&#39;s `open"
        );
    }

    #[test]
    fn bars_stay_inside_the_chart() {
        assert_eq!(scale(dec("50"), dec("100"), 420), 210);
        assert_eq!(scale(dec("1"), dec("3"), 100), 33);
        assert_eq!(scale(dec("2"), dec("3"), 100), 67);
        assert_eq!(scale(dec("0.005"), dec("1"), 100), 1, "half away from zero");
        assert_eq!(scale(dec("100"), dec("100"), 420), 420);
        // Beyond the scale, negative, or no scale at all: clamped.
        assert_eq!(scale(dec("1000"), dec("100"), 420), 420);
        assert_eq!(scale(dec("-5"), dec("100"), 420), 0);
        assert_eq!(scale(dec("5"), Decimal::ZERO, 420), 0);
        assert_eq!(scale(Decimal::MAX, dec("0.000000000000000001"), 420), 420);
        assert_eq!(scale(dec("0.000000000000000001"), Decimal::MAX, 420), 0);
        let mut v = dec("0.000001");
        while v < dec("1000000000") {
            let px = scale(v, dec("123456.789"), 300);
            assert!(px <= 300, "{v}: {px}");
            v *= dec("3.7");
        }
    }

    #[test]
    fn axes_end_on_round_numbers() {
        for (max, want) in [
            ("0", "1"),
            ("0.8", "1"),
            ("0.03", "0.05"),
            ("1", "1"),
            ("1.2", "2"),
            ("2.3", "2.5"),
            ("3", "5"),
            ("7", "10"),
            ("24.9", "25"),
            ("130", "200"),
            ("45000", "50000"),
        ] {
            assert_eq!(nice_max(dec(max)), dec(want), "{max}");
            assert!(nice_max(dec(max)) >= dec(max));
        }
        assert_eq!(tick(dec("12.5"), "USD"), "12.50 USD");
        assert_eq!(tick(dec("12500"), "USD"), "12,500 USD");
    }
}
