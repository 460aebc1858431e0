//! A trace line, built in one buffer by hand: `core::fmt` (and float
//! formatting above all) costs the better part of a microsecond per line
//! in wasm, more than the rest of the middleware together.

use std::time::Duration;

/// The most characters of a name or message a line carries (lines stay
/// under 4 KiB whatever the plugin names).
pub(crate) const MAX_FIELD: usize = 256;

/// A JSON object being written, one field after another.
pub(crate) struct Line(Vec<u8>);

impl Line {
    /// `{"at":SECONDS.MICROS` for `at` (since the Unix epoch), with room
    /// for `extra` more bytes.
    pub(crate) fn starting_at(at: Duration, extra: usize) -> Self {
        let mut line = Self(Vec::with_capacity(192 + extra));
        line.raw("{\"at\":");
        line.number(at.as_secs());
        line.raw(".");
        line.padded(u64::from(at.subsec_micros()), 6);
        line
    }

    /// Append `text` as it is (JSON already).
    pub(crate) fn raw(&mut self, text: &str) -> &mut Self {
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    /// Append `n` in decimal.
    pub(crate) fn number(&mut self, n: u64) -> &mut Self {
        self.padded(n, 1)
    }

    /// Append `n` in decimal, with leading zeros to `width` digits.
    fn padded(&mut self, mut n: u64, width: usize) -> &mut Self {
        let mut digits = [b'0'; 20];
        let mut at = digits.len();
        while n > 0 || digits.len() - at < width {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.0.extend_from_slice(&digits[at..]);
        self
    }

    /// Append `duration` in microseconds with one decimal (`12.5`),
    /// rounded down.
    pub(crate) fn micros(&mut self, duration: Duration) -> &mut Self {
        // In u64 (a u128 division is a library call in wasm).
        let tenths = duration
            .as_secs()
            .saturating_mul(10_000_000)
            .saturating_add(u64::from(duration.subsec_nanos() / 100));
        self.number(tenths / 10).raw(".").number(tenths % 10)
    }

    /// Append `text` as a JSON string, cut at [`MAX_FIELD`] characters.
    pub(crate) fn string(&mut self, text: &str) -> &mut Self {
        // Fewer bytes than that are fewer characters: no need to count.
        let cut = (text.len() > MAX_FIELD).then(|| text.char_indices().nth(MAX_FIELD));
        let text = match cut.flatten() {
            Some((end, _)) => &text[..end],
            None => text,
        };
        self.0.push(b'"');
        // Runs of plain characters go in whole; every character escaped
        // is ASCII, so the runs end on character boundaries.
        let mut run = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escaped = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.extend_from_slice(&text.as_bytes()[run..at]);
            if escaped.is_empty() {
                self.raw("\\u00").hex_digit(byte >> 4).hex_digit(byte & 0xf);
            } else {
                self.raw(escaped);
            }
            run = at + 1;
        }
        self.0.extend_from_slice(&text.as_bytes()[run..]);
        self.0.push(b'"');
        self
    }

    fn hex_digit(&mut self, digit: u8) -> &mut Self {
        self.0.push(b"0123456789abcdef"[usize::from(digit)]);
        self
    }

    /// The line's bytes (UTF-8), closed and ended with a newline.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(b"}\n");
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(build: impl FnOnce(&mut Line) -> &mut Line) -> String {
        let mut line = Line(Vec::new());
        build(&mut line);
        String::from_utf8(line.0).expect("UTF-8")
    }

    #[test]
    fn numbers_are_plain_decimal() {
        assert_eq!(written(|l| l.number(0)), "0");
        assert_eq!(written(|l| l.number(1_796_073_349)), "1796073349");
        assert_eq!(written(|l| l.number(u64::MAX)), u64::MAX.to_string());
        assert_eq!(written(|l| l.padded(4_168, 6)), "004168");
        assert_eq!(written(|l| l.padded(0, 6)), "000000");
    }

    #[test]
    fn the_time_has_six_decimals() {
        let line = Line::starting_at(Duration::new(1_764_496_800, 1_234_999), 0).finish();
        assert_eq!(line, b"{\"at\":1764496800.001234}\n");
    }

    #[test]
    fn micros_have_one_decimal_rounded_down() {
        assert_eq!(written(|l| l.micros(Duration::ZERO)), "0.0");
        assert_eq!(written(|l| l.micros(Duration::from_nanos(12_599))), "12.5");
        assert_eq!(
            written(|l| l.micros(Duration::from_secs(100))),
            "100000000.0"
        );
        // Past u64::MAX tenths, it saturates.
        let most = written(|l| l.micros(Duration::MAX));
        assert_eq!(most, "1844674407370955161.5");
    }

    #[test]
    fn strings_are_escaped_as_json_reads_them() {
        let text = "a\"b\\c\nd\re\tf\u{1}g\u{1f}hé€😀";
        let out = written(|l| l.string(text));
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fhé€😀\"");
    }

    #[test]
    fn strings_are_cut_at_max_field_characters() {
        let long = "é".repeat(MAX_FIELD + 10);
        let out = written(|l| l.string(&long));
        assert_eq!(out.chars().count(), MAX_FIELD + 2);
        let exact = "x".repeat(MAX_FIELD);
        assert_eq!(written(|l| l.string(&exact)).len(), MAX_FIELD + 2);
    }
}
