//! Splitting an inline request line into arguments the way redis-server does
//! (`sdssplitargs`): whitespace separates arguments, `"double"` quotes understand `\n`,
//! `\r`, `\t`, `\b`, `\a` and `\xHH` escapes, `'single'` quotes only `\'`, and a closing
//! quote must be followed by whitespace or the end of the line.

/// The line has an unterminated quote, or a closing quote followed by a non-space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnbalancedQuotes;

/// Splits `line` (without its line ending) into arguments.
///
/// Redis hands the line to `sdssplitargs` as a C string, so a NUL byte would end it there;
/// this function does the same (the request decoder never passes one: redis-server never
/// finds the end of a line holding a NUL).
pub(crate) fn split_inline_args(line: &[u8]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
    let line = match memchr::memchr(0, line) {
        Some(nul) => &line[..nul],
        None => line,
    };
    // Reading past the end yields 0, just as reading the C string's terminator would.
    let at = |index: usize| line.get(index).copied().unwrap_or(0);
    let mut position = 0;
    let mut args = Vec::new();
    loop {
        while at(position) != 0 && is_c_space(at(position)) {
            position += 1;
        }
        if at(position) == 0 {
            return Ok(args);
        }
        let mut in_double_quotes = false;
        let mut in_single_quotes = false;
        let mut current = Vec::new();
        let mut done = false;
        while !done {
            let byte = at(position);
            if in_double_quotes {
                if byte == b'\\'
                    && at(position + 1) == b'x'
                    && at(position + 2).is_ascii_hexdigit()
                    && at(position + 3).is_ascii_hexdigit()
                {
                    current.push(hex_value(at(position + 2)) * 16 + hex_value(at(position + 3)));
                    position += 3;
                } else if byte == b'\\' && at(position + 1) != 0 {
                    position += 1;
                    current.push(match at(position) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if byte == b'"' {
                    if at(position + 1) != 0 && !is_c_space(at(position + 1)) {
                        return Err(UnbalancedQuotes);
                    }
                    done = true;
                } else if byte == 0 {
                    return Err(UnbalancedQuotes);
                } else {
                    current.push(byte);
                }
            } else if in_single_quotes {
                if byte == b'\\' && at(position + 1) == b'\'' {
                    position += 1;
                    current.push(b'\'');
                } else if byte == b'\'' {
                    if at(position + 1) != 0 && !is_c_space(at(position + 1)) {
                        return Err(UnbalancedQuotes);
                    }
                    done = true;
                } else if byte == 0 {
                    return Err(UnbalancedQuotes);
                } else {
                    current.push(byte);
                }
            } else {
                match byte {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double_quotes = true,
                    b'\'' => in_single_quotes = true,
                    other => current.push(other),
                }
            }
            if at(position) != 0 {
                position += 1;
            }
        }
        args.push(current);
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
        split_inline_args(line)
    }

    fn args(list: &[&[u8]]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
        Ok(list.iter().map(|arg| arg.to_vec()).collect())
    }

    #[test]
    fn splits_like_sdssplitargs() {
        assert_eq!(split(b"SET a b"), args(&[b"SET", b"a", b"b"]));
        assert_eq!(split(b"  SET\t a  b  "), args(&[b"SET", b"a", b"b"]));
        assert_eq!(split(b""), args(&[]));
        assert_eq!(split(b"   "), args(&[]));
        assert_eq!(split(b"SET \"a b\" c"), args(&[b"SET", b"a b", b"c"]));
        assert_eq!(split(b"SET 'a b' c"), args(&[b"SET", b"a b", b"c"]));
        assert_eq!(
            split(b"\"\\x41\\n\\r\\t\\b\\a\\\\\\\"\""),
            args(&[b"A\n\r\t\x08\x07\\\""])
        );
        assert_eq!(split(b"\"\\x4\""), args(&[b"x4"]));
        assert_eq!(split(b"'it\\'s' '\\n'"), args(&[b"it's", b"\\n"]));
        assert_eq!(split(b"ab\"c d\"ef"), Err(UnbalancedQuotes));
        assert_eq!(split(b"ab\"c d\" ef"), args(&[b"abc d", b"ef"]));
        assert_eq!(split(b"\"\""), args(&[b""]));
        assert_eq!(split(b"a\x0bb"), args(&[b"a\x0bb"]));
        assert_eq!(split(b"GET a\0b c"), args(&[b"GET", b"a"]));
    }

    #[test]
    fn rejects_unbalanced_quotes() {
        assert_eq!(split(b"SET \"a b"), Err(UnbalancedQuotes));
        assert_eq!(split(b"SET 'a b"), Err(UnbalancedQuotes));
        assert_eq!(split(b"SET \"a\"b"), Err(UnbalancedQuotes));
        assert_eq!(split(b"SET 'a'b"), Err(UnbalancedQuotes));
        assert_eq!(split(b"SET \"a\\"), Err(UnbalancedQuotes));
    }
}
