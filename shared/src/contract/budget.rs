//! The result budget: every result and cause fits the Step Functions limits, as valid
//! UTF-8 JSON, measured on the serialized JSON (escaping included).
//!
//! One mechanism serves logs and causes alike: long strings are cut from the front
//! (their most recent output kept) down to a common *water level*, so a small string
//! keeps all of itself and the big ones share what is left equally. A cut string starts
//! with a visible marker that says what was kept.

use serde_json::Value;

/// The most bytes of a task result or a `SendTaskSuccess` output (256 KiB).
pub const MAX_RESULT_BYTES: usize = 262_144;

/// What the worker fills: one byte under the limit, because Step Functions' interpreter
/// (as moto implements it) accepts only sizes strictly below 256 KiB.
pub const RESULT_BUDGET: usize = MAX_RESULT_BYTES - 1;

/// The room an invocation's own result (request/response, `lambda:invoke`) leaves for
/// the envelope Step Functions puts around it in the state's output (`ExecutedVersion`,
/// `SdkHttpMetadata` with Lambda's response headers, `SdkResponseMetadata`,
/// `StatusCode`: about 1.5 KB), with a wide margin.
pub const ENVELOPE_ROOM: usize = 8_192;

/// The bytes a result may take: all of [`RESULT_BUDGET`] when it goes back on the task
/// token (the state's output is the result itself), less [`ENVELOPE_ROOM`] when it is
/// the invocation's result, which Step Functions wraps.
#[must_use]
pub fn result_budget(on_task_token: bool) -> usize {
    if on_task_token {
        RESULT_BUDGET
    } else {
        RESULT_BUDGET - ENVELOPE_ROOM
    }
}

/// How a string's cut is described in its marker.
const MARKER_PREFIX: &str = "[eks-task-worker: cut, kept the last ";

/// The bytes one character costs inside a serialized JSON string, counted the way
/// that gives the most: escapes as `serde_json` writes them, and non-ASCII characters
/// as `\uXXXX` escapes (as Python's `json.dumps` writes them), so a result fits
/// however the service re-serializes it.
fn char_cost(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        '\u{0}'..='\u{1f}' => 6,
        '\u{20}'..='\u{7f}' => 1,
        '\u{80}'..='\u{ffff}' => 6,
        _ => 12,
    }
}

/// The length of `s` once serialized as a JSON string, without its quotes, counted
/// as [`serialized_len`] counts.
#[must_use]
pub fn escaped_len(s: &str) -> usize {
    s.chars().map(char_cost).sum()
}

/// The size in bytes of `v` serialized as JSON, counted generously: never less than
/// compact UTF-8 JSON, and never less than Python's `json.dumps` (separators `", "`
/// and `": "`, ASCII escapes), which is how moto's Step Functions interpreter measures
/// a state's data. A value this function sizes within the budget fits both.
#[must_use]
pub fn serialized_len(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(b) => {
            if *b {
                4
            } else {
                5
            }
        }
        // Python may print a float longer than serde does (`1e+20`): allow for it.
        Value::Number(n) => n.to_string().len() + usize::from(n.is_f64()) * 4,
        Value::String(s) => escaped_len(s) + 2,
        Value::Array(a) => {
            2 + a.iter().map(serialized_len).sum::<usize>() + a.len().saturating_sub(1) * 2
        }
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| escaped_len(k) + 4 + serialized_len(x))
                .sum::<usize>()
                + o.len().saturating_sub(1) * 2
        }
    }
}

fn marker(kept: usize) -> String {
    format!("{MARKER_PREFIX}{kept} bytes]\n")
}

/// Cuts `text` from the front so that its escaped length is at most `max_escaped`,
/// keeping the end, at a UTF-8 boundary and, where one is near, a line boundary; the
/// result starts with a marker. `partial` says `text` is already only the tail of a
/// longer original, so it is marked even when it fits. Returns `text` unchanged when it
/// fits and is whole; an empty string when not even the marker fits.
#[must_use]
pub fn keep_tail(text: &str, max_escaped: usize, partial: bool) -> String {
    if !partial && escaped_len(text) <= max_escaped {
        return text.to_owned();
    }
    // Reserve room for the longest marker this cut can produce.
    let reserve = escaped_len(&marker(text.len()));
    let Some(room) = max_escaped.checked_sub(reserve) else {
        return String::new();
    };
    // Walk back from the end, char by char, while the escaped length fits.
    let mut start = text.len();
    let mut used = 0;
    for (i, c) in text.char_indices().rev() {
        let cost = char_cost(c);
        if used + cost > room {
            break;
        }
        used += cost;
        start = i;
    }
    let mut tail = &text[start..];
    // Prefer to start on a fresh line when the line break is near the cut.
    if start > 0 && !text[..start].ends_with('\n') {
        let near = tail.len().min(1024);
        if let Some(nl) = tail.as_bytes()[..near].iter().position(|&b| b == b'\n') {
            if nl + 1 < tail.len() {
                tail = &tail[nl + 1..];
            }
        }
    }
    format!("{}{tail}", marker(tail.len()))
}

/// The largest level `L` such that `Σ min(cost_i, L) <= available`: items at or under
/// `L` keep all of themselves; the others are cut to `L`. `usize::MAX` when everything
/// fits.
#[must_use]
pub fn water_level(costs: &[usize], available: usize) -> usize {
    if costs.iter().sum::<usize>() <= available {
        return usize::MAX;
    }
    let mut sorted = costs.to_vec();
    sorted.sort_unstable();
    let mut remaining = available;
    let mut left = sorted.len();
    for &c in &sorted {
        let share = remaining / left;
        if c > share {
            return share;
        }
        remaining -= c;
        left -= 1;
    }
    usize::MAX
}

/// A string leaf of a JSON value that may be cut.
pub trait Cuttable {
    /// Its cost when kept whole, in serialized bytes beyond an empty placeholder.
    fn cost(&self) -> usize;
    /// Itself, cut to at most `level` serialized bytes beyond the placeholder.
    fn cut(&self, level: usize) -> Value;
    /// Itself, whole.
    fn whole(&self) -> Value;
}

/// Fits pieces into a document: `assemble` builds the document from one value per
/// piece; the pieces are cut to a common level until the serialized document is at
/// most `limit` bytes. Returns `None` when even empty pieces do not fit.
pub fn fit_pieces<P: Cuttable>(
    pieces: &[P],
    limit: usize,
    assemble: impl Fn(Vec<Value>) -> Value,
) -> Option<Value> {
    let skeleton = serialized_len(&assemble(
        pieces
            .iter()
            .map(|_| Value::String(String::new()))
            .collect(),
    ));
    let available = limit.checked_sub(skeleton)?;
    let costs: Vec<usize> = pieces.iter().map(Cuttable::cost).collect();
    let mut level = water_level(&costs, available);
    let largest = costs.iter().copied().max().unwrap_or(0);
    // The costs are exact, so the first round fits; the rounds after are a safety net.
    for _ in 0..16 {
        let values = pieces
            .iter()
            .zip(&costs)
            .map(|(p, &c)| if c <= level { p.whole() } else { p.cut(level) })
            .collect();
        let doc = assemble(values);
        let size = serialized_len(&doc);
        if size <= limit {
            return Some(doc);
        }
        let cut_count = costs.iter().filter(|&&c| c > level).count().max(1);
        level = level
            .min(largest)
            .saturating_sub((size - limit).div_ceil(cut_count));
    }
    let empty = assemble(pieces.iter().map(|p| p.cut(0)).collect());
    (serialized_len(&empty) <= limit).then_some(empty)
}

struct Leaf<'a>(&'a str);

impl Cuttable for Leaf<'_> {
    fn cost(&self) -> usize {
        escaped_len(self.0)
    }
    fn cut(&self, level: usize) -> Value {
        Value::String(keep_tail(self.0, level, false))
    }
    fn whole(&self) -> Value {
        Value::String(self.0.to_owned())
    }
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

fn replace_strings(v: &Value, next: &mut impl Iterator<Item = Value>) -> Value {
    match v {
        Value::String(_) => next.next().unwrap_or(Value::Null),
        Value::Array(a) => Value::Array(a.iter().map(|x| replace_strings(x, next)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), replace_strings(x, next)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Fits any JSON value into `limit` bytes by cutting its string values (their ends
/// kept), and serializes it. Used for `SendTaskFailure` causes. When even that cannot
/// fit (a value made of many keys), a JSON string holding the tail of the text is
/// returned instead.
#[must_use]
pub fn fit_value_chars(v: &Value, limit: usize) -> String {
    // Bytes are at least characters, so fitting the bytes fits the characters.
    let mut leaves = Vec::new();
    collect_strings(v, &mut leaves);
    let pieces: Vec<Leaf<'_>> = leaves.into_iter().map(Leaf).collect();
    let fitted = fit_pieces(&pieces, limit, |values| {
        replace_strings(v, &mut values.into_iter())
    });
    match fitted {
        Some(doc) => doc.to_string(),
        None => {
            let text = v.to_string();
            Value::String(keep_tail(&text, limit.saturating_sub(2), false)).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn escaped_len_is_never_less_than_serde_json_or_python() {
        for s in [
            "plain",
            "quote\"back\\",
            "nl\n\t\r",
            "\u{0}\u{1f}\u{7f}",
            "ünïcødé 🎉",
            "",
        ] {
            assert!(
                escaped_len(s) + 2 >= serde_json::to_string(s).map(|x| x.len()).unwrap_or(0),
                "{s:?}"
            );
        }
        // Python: len(json.dumps("ü🎉")) == 20, quotes included.
        assert_eq!(escaped_len("ü🎉"), 18);
        assert_eq!(escaped_len("a\"\u{1}"), 9);
    }

    #[test]
    fn serialized_len_counts_pythons_separators() {
        // Python: len(json.dumps({"a": [1, 2], "b": None})) == 24.
        let v = json!({"a": [1, 2], "b": null});
        assert_eq!(serialized_len(&v), 24);
        assert!(serialized_len(&v) >= v.to_string().len());
    }

    #[test]
    fn the_budget_is_one_byte_under_256_kib() {
        // The interpreter refuses a state's data of exactly 262,144 bytes.
        assert_eq!(RESULT_BUDGET, 262_143);
        assert_eq!(result_budget(true), 262_143);
        assert_eq!(result_budget(false), 262_143 - 8_192);
    }

    #[test]
    fn serialized_len_is_pythons_length_for_arrays_and_room_for_floats() {
        // Python: len(json.dumps([1, [2, 3, 4], {"k": [5, 6, 7]}, None])) == 38.
        assert_eq!(
            serialized_len(&json!([1, [2, 3, 4], {"k": [5, 6, 7]}, null])),
            38
        );
        // Python writes 1.5e-7 as "1.5e-07", one byte longer than serde_json's "1.5e-7".
        for (v, python) in [
            (json!(1.5e-7), "1.5e-07"),
            (json!(1e20), "1e+20"),
            (json!(0.5), "0.5"),
        ] {
            assert!(serialized_len(&v) >= python.len(), "{v}");
            assert!(serialized_len(&v) >= v.to_string().len(), "{v}");
        }
    }

    #[test]
    fn a_cut_fills_its_room_exactly() {
        let text = "x".repeat(1_000);
        let room = 200 - escaped_len(&marker(text.len()));
        assert_eq!(
            keep_tail(&text, 200, false),
            format!("{}{}", marker(room), "x".repeat(room))
        );
    }

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(keep_tail("hello\n", 100, false), "hello\n");
    }

    #[test]
    fn long_text_keeps_its_end_with_a_marker_on_a_line_boundary() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let cut = keep_tail(&text, 500, false);
        assert!(escaped_len(&cut) <= 500);
        assert!(cut.starts_with(MARKER_PREFIX), "{cut}");
        assert!(cut.ends_with("line 999\n"));
        let body = cut.split_once("]\n").map(|x| x.1).unwrap_or_default();
        assert!(
            body.starts_with("line "),
            "cut on a line boundary: {body:?}"
        );
    }

    #[test]
    fn a_cut_keeps_the_longest_tail_that_starts_a_line() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        for max in 150..400 {
            let cut = keep_tail(&text, max, false);
            let room = max - escaped_len(&marker(text.len()));
            let body = cut
                .split_once("]\n")
                .map(|x| x.1)
                .unwrap_or_else(|| panic!("no marker: {cut:?}"));
            let before = &text[..text.len() - body.len()];
            assert!(
                text.ends_with(body) && before.ends_with('\n'),
                "{max}: {body:?}"
            );
            assert!(escaped_len(body) <= room, "{max}");
            let line_before = before[..before.len() - 1].rfind('\n').map_or(0, |i| i + 1);
            assert!(
                escaped_len(&text[line_before..]) > room,
                "{max}: a whole line more would have fitted: {body:?}"
            );
        }
    }

    #[test]
    fn a_single_long_line_is_cut_within_itself() {
        let text = format!("{}\n", "x".repeat(1_000));
        let cut = keep_tail(&text, 200, false);
        let body = cut.split_once("]\n").map(|x| x.1).unwrap_or_default();
        assert!(body.len() > 100 && body.ends_with("x\n"), "{cut:?}");
    }

    #[test]
    fn a_tail_that_fits_is_kept_whole_with_its_first_line() {
        let cut = keep_tail("first\nsecond\n", 1000, true);
        assert!(cut.starts_with(MARKER_PREFIX));
        assert!(cut.ends_with("]\nfirst\nsecond\n"), "{cut:?}");
    }

    #[test]
    fn water_level_is_the_largest_level_that_fits() {
        for costs in [
            vec![10, 50],
            vec![10, 10, 30],
            vec![1, 2, 3, 40, 41],
            vec![7],
        ] {
            for available in 0..costs.iter().sum::<usize>() {
                let fits = |l: usize| costs.iter().map(|&c| c.min(l)).sum::<usize>() <= available;
                let largest = (0..=100).rev().find(|&l| fits(l)).unwrap_or(0);
                assert_eq!(
                    water_level(&costs, available),
                    largest,
                    "{costs:?} {available}"
                );
            }
        }
    }

    #[test]
    fn strings_inside_arrays_are_cut_too() {
        let v = json!({"log": ["a".repeat(1_000), "tail"]});
        let s = fit_value_chars(&v, 200);
        let fitted: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
        assert!(s.len() <= 200, "{s}");
        assert_eq!(fitted["log"][1], "tail", "{s}");
        assert!(
            fitted["log"][0]
                .as_str()
                .is_some_and(|x| x.ends_with("aaa")),
            "{s}"
        );
    }

    #[test]
    fn a_tail_read_is_marked_even_when_it_fits() {
        let cut = keep_tail("last line\n", 1000, true);
        assert!(cut.starts_with(MARKER_PREFIX));
        assert!(cut.ends_with("last line\n"));
    }

    #[test]
    fn cuts_never_split_a_character() {
        let text = "é".repeat(1000);
        let cut = keep_tail(&text, 301, false);
        assert!(escaped_len(&cut) <= 301);
        assert!(cut.ends_with('é'));
    }

    #[test]
    fn escaping_counts_against_the_budget() {
        let text = "\u{1}".repeat(1000); // 6 bytes each once escaped
        let cut = keep_tail(&text, 600, false);
        assert!(escaped_len(&cut) <= 600);
        let kept = cut.bytes().filter(|&b| b == 1).count();
        assert!((80..=100).contains(&kept), "{kept}");
    }

    #[test]
    fn water_level_keeps_small_items_whole() {
        assert_eq!(water_level(&[10, 20], 100), usize::MAX);
        assert_eq!(water_level(&[10, 1000, 1000], 110), 50);
        assert_eq!(water_level(&[0, 0], 0), usize::MAX);
        assert_eq!(water_level(&[5, 5], 4), 2);
    }

    #[test]
    fn fit_value_chars_cuts_the_big_strings_fairly() {
        let v =
            json!({"small": "keep me", "a": "x".repeat(50_000), "b": "y".repeat(50_000), "n": 3});
        let s = fit_value_chars(&v, 32_768);
        assert!(s.len() <= 32_768);
        let back: Value = serde_json::from_str(&s).unwrap_or_default();
        assert_eq!(back["small"], "keep me");
        assert_eq!(back["n"], 3);
        let a = back["a"].as_str().unwrap_or_default().len();
        let b = back["b"].as_str().unwrap_or_default().len();
        assert!(a > 15_000 && b > 15_000 && a.abs_diff(b) < 100, "{a} {b}");
    }

    #[test]
    fn fit_value_chars_leaves_small_values_alone() {
        let v = json!({"message": "short"});
        assert_eq!(fit_value_chars(&v, 100), v.to_string());
    }

    proptest! {
        #[test]
        fn fitted_values_are_valid_json_within_the_limit(
            strings in proptest::collection::vec(".{0,3000}", 0..12),
            limit in 200usize..20_000,
        ) {
            let v = Value::Array(strings.into_iter().map(Value::String).collect());
            let s = fit_value_chars(&v, limit);
            prop_assert!(s.len() <= limit, "{} > {}", s.len(), limit);
            prop_assert!(serde_json::from_str::<Value>(&s).is_ok());
        }

        #[test]
        fn keep_tail_respects_any_budget(text in ".{0,2000}", max in 0usize..3000) {
            let cut = keep_tail(&text, max, false);
            prop_assert!(escaped_len(&cut) <= max || cut == text && escaped_len(&text) <= max);
            prop_assert!(text.ends_with(cut.split_once("]\n").map_or(cut.as_str(), |x| x.1)) || cut.is_empty());
        }
    }
}
