"""Statement -> rows (dicts of strings) for CSV/XLSX export and a JSON-ready document for the API.

Money leaves as decimal strings in yuan with two decimals (``format_amount(fen, 2)``), never floats. Rows can
carry English or Chinese column headers (finance staff read the Chinese ones).
"""
from __future__ import annotations

from dataclasses import dataclass

from shared.amounts import format_amount

from .lines import LineKind, StatementLine
from .statement import Statement


@dataclass(frozen=True)
class Column:
    key: str
    en: str
    zh: str


LINE_COLUMNS: tuple[Column, ...] = (
    Column("line_no", "Line", "行号"),
    Column("kind", "Type", "类型"),
    Column("payer", "Payer", "付款方"),
    Column("payee", "Payee", "收款方"),
    Column("amount", "Amount (CNY)", "金额(元)"),
    # a statistics_share line moves a statistic, not money: a finance system summing the money column must not
    # count it, so it has a column of its own
    Column("statistic_amount", "Statistic shared (CNY of the statistic)", "统计分成数额(元)"),
    Column("agreement", "Agreement", "协议"),
    Column("tax_kind", "Tax", "税种"),
    Column("month", "Period of origin", "所属期"),
    Column("agreement_year", "Agreement year", "协议年度"),
    Column("adjusts", "Adjusts", "调整项目"),
    Column("measure", "Statistic", "统计指标"),
    Column("sources", "Sources", "来源"),
)

TOTAL_COLUMNS: tuple[Column, ...] = (
    Column("party", "Party", "结算主体"),
    Column("receivable", "Receivable (CNY)", "应收(元)"),
    Column("payable", "Payable (CNY)", "应付(元)"),
    Column("net", "Net (CNY)", "净额(元)"),
)

KIND_LABELS_ZH = {
    LineKind.REVENUE_SHARE: "税收分成",
    LineKind.GUARANTEED_MINIMUM_TOPUP: "保底补足",
    LineKind.ADJUSTMENT: "调整",
    LineKind.COMPENSATION: "腾退补偿",
    LineKind.PROCEEDS_SHARE: "指标收益分成",
    LineKind.BUYBACK: "收储回购",
    LineKind.STATISTICS_SHARE: "统计分成",
}

MEASURE_LABELS_ZH = {"value_added": "增加值", "output": "产值"}


def yuan(fen: int) -> str:
    return format_amount(fen, 2)


def _kind(kind: LineKind | None, language: str) -> str:
    if kind is None:
        return ""
    return KIND_LABELS_ZH[kind] if language == "zh" else kind.value


def _sources(line: StatementLine) -> str:
    text = ";".join(line.sources)
    missing = line.source_count - len(line.sources)
    return f"{text};…(+{missing})" if missing > 0 else text


def line_values(line: StatementLine, language: str = "en") -> dict[str, str]:
    """One line as strings, keyed by column key."""
    measure = line.measure or ""
    if language == "zh":
        measure = MEASURE_LABELS_ZH.get(measure, measure)
    return {
        "line_no": str(line.line_no),
        "kind": _kind(line.kind, language),
        "payer": line.payer,
        "payee": line.payee,
        "amount": yuan(line.amount_fen) if line.kind.is_money else "",
        "statistic_amount": "" if line.kind.is_money else yuan(line.amount_fen),
        "agreement": f"{line.agreement_id}@v{line.agreement_version}" if line.agreement_id else "",
        "tax_kind": line.tax_kind or "",
        "month": line.month or "",
        "agreement_year": str(line.agreement_year) if line.agreement_year else "",
        "adjusts": _kind(line.adjusts, language),
        "measure": measure,
        "sources": _sources(line),
    }


def _headed(values: dict[str, str], columns: tuple[Column, ...], headers: str) -> dict[str, str]:
    if headers not in ("en", "zh", "key"):
        raise ValueError("headers must be 'en', 'zh' or 'key'")
    return {getattr(c, headers) if headers != "key" else c.key: values[c.key] for c in columns}


def line_row(line: StatementLine, headers: str = "en") -> dict[str, str]:
    """One line as an export row (for lines streamed from storage rather than held in a ``Statement``)."""
    return _headed(line_values(line, "zh" if headers == "zh" else "en"), LINE_COLUMNS, headers)


def total_row(party: str, receivable_fen: int, payable_fen: int, headers: str = "en") -> dict[str, str]:
    values = {"party": party, "receivable": yuan(receivable_fen), "payable": yuan(payable_fen),
              "net": yuan(receivable_fen - payable_fen)}
    return _headed(values, TOTAL_COLUMNS, headers)


def column_titles(columns: tuple[Column, ...], headers: str = "en") -> list[str]:
    return [c.key if headers == "key" else getattr(c, headers) for c in columns]


def statement_rows(statement: Statement, headers: str = "en") -> list[dict[str, str]]:
    """Lines as rows; ``headers`` 'en' | 'zh' | 'key'. With 'zh' the line types are in Chinese too."""
    language = "zh" if headers == "zh" else "en"
    return [_headed(line_values(ln, language), LINE_COLUMNS, headers) for ln in statement.lines]


def totals_rows(statement: Statement, headers: str = "en") -> list[dict[str, str]]:
    return [
        _headed(
            {"party": t.party, "receivable": yuan(t.receivable_fen), "payable": yuan(t.payable_fen), "net": yuan(t.net_fen)},
            TOTAL_COLUMNS,
            headers,
        )
        for t in statement.totals
    ]


def statement_document(statement: Statement) -> dict:
    """JSON-ready view for the API: amounts as decimal strings in yuan, fen never exposed as floats."""
    return {
        "county": statement.county,
        "period": statement.period.label,
        "status": statement.status,
        "as_of": statement.as_of.isoformat(),
        "finalized_at": statement.finalized_at.isoformat() if statement.finalized_at else None,
        "policy": {"id": statement.policy_id, "version": statement.policy_version},
        "content_hash": statement.content_hash,
        "unmatched_receipts": statement.unmatched_receipts,
        "lines": [
            {
                "line_no": ln.line_no,
                "kind": ln.kind.value,
                "payer": ln.payer,
                "payee": ln.payee,
                "amount": yuan(ln.amount_fen),
                "agreement_id": ln.agreement_id,
                "agreement_version": ln.agreement_version,
                "tax_kind": ln.tax_kind,
                "month": ln.month,
                "agreement_year": ln.agreement_year,
                "adjusts": ln.adjusts.value if ln.adjusts else None,
                "measure": ln.measure,
                "allocation_id": ln.allocation_id,
                "sources": list(ln.sources),
                "source_count": ln.source_count,
            }
            for ln in statement.lines
        ],
        "totals": [
            {"party": t.party, "receivable": yuan(t.receivable_fen), "payable": yuan(t.payable_fen), "net": yuan(t.net_fen)}
            for t in statement.totals
        ],
        "statistics_totals": [
            {"party": s.party, "measure": s.measure, "gained": yuan(s.gained), "ceded": yuan(s.ceded)}
            for s in statement.statistics_totals
        ],
    }
