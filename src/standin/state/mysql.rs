//! How MySQL and PHP treat the values Chamilo stores: `utf8mb3_unicode_ci` comparisons, what a
//! 3-byte `utf8` column keeps, PHP's `(int)` cast.

/// Folds a string for `utf8mb3_unicode_ci` comparisons: lower case without Latin accents.
pub fn fold(s: &str) -> String {
    folded_chars(s).collect()
}

fn folded_chars(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase).map(|c| match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        other => other,
    })
}

/// SQL `=` under `utf8mb3_unicode_ci`: case/accent-insensitive, trailing spaces ignored.
pub fn sql_eq(a: &str, b: &str) -> bool {
    // Without allocating: this runs once per user in extra-field lookups.
    folded_chars(a.trim_end_matches(' ')).eq(folded_chars(b.trim_end_matches(' ')))
}

/// What a `utf8` (3-byte) column with `sql_mode=''` keeps of `value`: each byte of a character
/// outside the Basic Multilingual Plane becomes `?`, then the text is cut to `max` characters.
pub fn store_text(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if (c as u32) > 0xFFFF {
            out.push_str("????");
        } else {
            out.push(c);
        }
    }
    match out.char_indices().nth(max) {
        Some((cut, _)) => out[..cut].to_owned(),
        None => out,
    }
}

/// PHP's `(int)` cast of a request string: leading integer, else 0.
pub fn php_int(value: &str) -> i64 {
    let t = value.trim_start();
    let (sign, digits) = match t.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().map(|n| sign * n).unwrap_or(0)
}
