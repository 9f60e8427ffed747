//! The report as text for a terminal: a few totals and aligned tables,
//! numbers right-aligned. Attention items and notices go to stderr with the
//! run summary, not here.

use super::format::{count, money, percent, signed_money, signed_percent};
use super::{BilledFrom, Overview};
use crate::read::overview::figures::Mover;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

/// Columns padded to their widest cell; two spaces between columns.
fn table(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for ((c, w), (_, align)) in cells.iter().zip(&widths).zip(header) {
            let pad = w - c.chars().count();
            match align {
                Left => s += &format!("{c}{}  ", " ".repeat(pad)),
                Right => s += &format!("{}{c}  ", " ".repeat(pad)),
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|(h, _)| *h).collect());
    for r in rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out
}

/// At most `n` characters, with `...` when cut.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 3).collect::<String>() + "..."
    }
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The text summary (stdout of `meter report`).
pub fn render(o: &Overview) -> String {
    let c = o.currency.as_str();
    let p = &o.period;
    let mut s = match p.in_progress {
        None => format!(
            "report {}: month complete, {} days",
            o.month, p.days_in_month
        ),
        Some(as_of) => format!(
            "report {}: in progress, {} of {} days complete as of {as_of}",
            o.month, p.complete_days, p.days_in_month
        ),
    };
    s += &match &o.billed_from {
        BilledFrom::Revision { revision } => format!(", billed: invoices rev-{revision}\n"),
        BilledFrom::Preview {
            published_revision: None,
        } => ", billed: preview, not published\n".to_string(),
        BilledFrom::Preview {
            published_revision: Some(revision),
        } => format!(", billed: preview of the same days (rev-{revision} bills the whole month)\n"),
    };
    s += &format!("amounts in {c} unless marked");
    for r in &o.fx {
        s += &format!(
            "; 1 {} = {} {} ({})",
            r.from,
            r.rate.normalize(),
            r.to,
            r.how
        );
    }
    s += "\n\n";

    let t = &o.totals;
    let billed: Vec<String> = t.billed.iter().map(|(cur, v)| money(*v, cur)).collect();
    let mut kv: Vec<Vec<String>> = vec![
        vec![
            "provider cost".into(),
            money(t.cost, c),
            format!("{} requests, {} tokens", count(t.requests), count(t.tokens)),
        ],
        vec![
            "billed".into(),
            money(t.revenue, c),
            if billed.is_empty() {
                "nothing billed".into()
            } else {
                billed.join(" + ")
            },
        ],
        vec![
            "margin".into(),
            money(t.margin, c),
            opt(t.margin_percent, |m| format!("{} of billed", percent(m))),
        ],
    ];
    if let Some(pr) = &o.projection {
        kv.push(vec![
            "month-end cost".into(),
            money(pr.month_end, c),
            format!(
                "projected: {} a day x {} remaining days",
                money(pr.daily_average, c),
                pr.remaining_days
            ),
        ]);
    }
    kv.push(vec![
        format!("vs {}", o.previous.month),
        if o.previous.rolled_up {
            signed_money(t.cost - o.previous.cost, c)
        } else {
            "-".into()
        },
        if o.previous.rolled_up {
            format!(
                "{} over {} days{}",
                money(o.previous.cost, c),
                o.previous.days,
                opt(o.previous.change_percent, |p| format!(
                    ", {}",
                    signed_percent(p)
                ))
            )
        } else {
            "no rolled-up usage".into()
        },
    ]);
    kv.push(vec![
        "unpriced".into(),
        count(t.unpriced_requests),
        format!("requests, {} tokens", count(t.unpriced_tokens)),
    ]);
    kv.push(vec![
        "silent VMs".into(),
        o.silent_vms
            .iter()
            .map(|v| &v.vm_id)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            .to_string(),
        String::new(),
    ]);
    s += &table(&[("", Left), ("", Right), ("", Left)], &kv)
        .lines()
        .skip(1)
        .map(|l| l.to_string() + "\n")
        .collect::<String>();

    s += "\nby customer\n";
    let projected = p.in_progress.is_some();
    let mut header = vec![
        ("customer", Left),
        ("name", Left),
        ("requests", Right),
        ("tokens", Right),
        ("cost", Right),
        ("share", Right),
    ];
    if projected {
        header.push(("month-end", Right));
    }
    header.extend([("billed", Right), ("margin", Right), ("margin %", Right)]);
    let rows: Vec<Vec<String>> = o
        .customers
        .iter()
        .map(|l| {
            let mut r = vec![
                if l.customer_id.is_empty() {
                    "-".into()
                } else {
                    l.customer_id.clone()
                },
                cut(&l.name, 28),
                count(l.requests),
                count(l.tokens),
                money(l.cost, c),
                opt(l.cost_share_percent, percent),
            ];
            if projected {
                r.push(opt(l.projected_cost, |v| money(v, c)));
            }
            r.push(opt(l.billed.as_ref(), |b| money(b.total, &b.currency)));
            r.push(money(l.margin, c));
            r.push(opt(l.margin_percent, percent));
            r
        })
        .collect();
    s += &table(&header, &rows);

    s += "\nby model\n";
    let rows: Vec<Vec<String>> = o
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
    s += &table(
        &[
            ("provider", Left),
            ("model", Left),
            ("requests", Right),
            ("tokens", Right),
            ("cost", Right),
            ("share", Right),
            ("unpriced", Right),
        ],
        &rows,
    );

    s += &format!(
        "\nmovers vs {} ({} days{})\n",
        o.previous.month,
        o.previous.days,
        if o.previous.rolled_up {
            ""
        } else {
            ", no rolled-up usage: all new"
        }
    );
    let mover_rows = |kind: &str, list: &[Mover], name: &dyn Fn(&str) -> String| {
        list.iter()
            .map(|m| {
                vec![
                    kind.to_string(),
                    cut(&name(&m.key), 40),
                    money(m.previous, c),
                    money(m.current, c),
                    signed_money(m.change, c),
                    opt(m.change_percent, signed_percent),
                ]
            })
            .collect::<Vec<_>>()
    };
    let customer_name = |k: &str| match k {
        "" => "(VMs no customer lists)".to_string(),
        k => format!("{k} {}", o.customer_name(k)),
    };
    let model_name = |k: &str| k.to_string();
    let mut rows = Vec::new();
    for list in [&o.customer_movers.up, &o.customer_movers.down] {
        rows.extend(mover_rows("customer", list, &customer_name));
    }
    for list in [&o.model_movers.up, &o.model_movers.down] {
        rows.extend(mover_rows("model", list, &model_name));
    }
    if rows.is_empty() {
        s += "no changes\n";
    } else {
        s += &table(
            &[
                ("", Left),
                ("", Left),
                ("previous", Right),
                ("current", Right),
                ("change", Right),
                ("%", Right),
            ],
            &rows,
        );
    }

    // Contracts: only when some customer has one (schemas/contracts.md).
    if !o.contracts.is_empty() {
        s += "\ncontracts (invoice lines)\n";
        let rows = o.contract_rows();
        s += &table(
            &[
                ("customer", Left),
                ("discounts", Right),
                ("commitment true-up", Right),
                ("credit applied", Right),
                ("billed", Right),
            ],
            &rows,
        );
    }
    if !o.credits.is_empty() {
        s += "\nprepaid credit\n";
        let rows = o.credit_rows();
        s += &table(
            &[
                ("customer", Left),
                ("grant", Left),
                ("opening", Right),
                ("applied", Right),
                ("expired", Right),
                ("closing", Right),
                ("status", Left),
            ],
            &rows,
        );
    }

    s += "\nunpriced usage\n";
    if o.unpriced.is_empty() {
        s += "none\n";
    } else {
        let rows: Vec<Vec<String>> = o
            .unpriced
            .iter()
            .map(|u| {
                vec![
                    format!("{}/{}", u.provider, u.model),
                    count(u.requests),
                    count(u.tokens),
                    u.reason.clone(),
                ]
            })
            .collect();
        s += &table(
            &[
                ("model", Left),
                ("requests", Right),
                ("tokens", Right),
                ("reason", Left),
            ],
            &rows,
        );
    }

    s += "\nsilent VMs\n";
    if o.silent_vms.is_empty() {
        s += "none\n";
    } else {
        let rows: Vec<Vec<String>> = o
            .silent_vms
            .iter()
            .map(|v| {
                vec![
                    v.vm_id.clone(),
                    if v.customer_id.is_empty() {
                        "-".into()
                    } else {
                        v.customer_id.clone()
                    },
                    v.last_seen.to_string(),
                    v.first_silent.to_string(),
                    v.last_silent.to_string(),
                    v.days.to_string(),
                ]
            })
            .collect();
        s += &table(
            &[
                ("vm", Left),
                ("customer", Left),
                ("last seen", Left),
                ("silent from", Left),
                ("to", Left),
                ("days", Right),
            ],
            &rows,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let t = table(
            &[("name", Left), ("amount", Right)],
            &[
                vec!["a".into(), "1.00 USD".into()],
                vec!["longer".into(), "1,234.50 USD".into()],
            ],
        );
        assert_eq!(
            t,
            "name          amount\na           1.00 USD\nlonger  1,234.50 USD\n"
        );
        assert_eq!(cut("Zeta Consulting, Inc.", 10), "Zeta Co...");
        assert_eq!(cut("short", 10), "short");
    }
}
