//! nginx configuration syntax, read as nginx reads it: directives and blocks with their file and line, `include` expanded.
//!
//! Only the syntax is handled here; what the directives mean is `cli::import_nginx`'s business.
//! The tokenizer follows nginx's own (`ngx_conf_read_token`): `#` starts a comment only where
//! a token could start and runs to the end of the line; quotes only open at the start of a
//! token; a word ends at whitespace, `;` or `{` (so `${var}` stays one word); a backslash
//! takes the next character literally.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

/// Blocks nested deeper than this are refused: no real configuration comes
/// close, and it keeps a hostile file from exhausting the stack when dropped.
const MAX_BLOCK_DEPTH: usize = 64;

/// Includes nested deeper than this are refused (an include cycle, most likely).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a directive was written: a file and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file, as named on the command line or by the `include` that read it.
    pub file: Arc<Path>,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One directive: `name args...;` or `name args... { block }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The first word.
    pub name: String,
    /// The other words, quotes removed and escapes applied.
    pub args: Vec<String>,
    /// The directives inside `{ ... }`, when the directive has a block.
    pub block: Option<Vec<Directive>>,
    /// Where the directive's name was written.
    pub place: Place,
}

/// Why a configuration could not be read.
#[derive(Debug, Error)]
pub enum ParseError {
    /// The text is not nginx syntax.
    #[error("{place}: {message}")]
    Syntax { place: Place, message: String },
    /// A file (the top one, or one named by `include`) could not be read.
    #[error("{}cannot read {}: {source}", .place.as_ref().map(|p| format!("{p}: ")).unwrap_or_default(), .path.display())]
    Read { place: Option<Place>, path: PathBuf, source: std::io::Error },
}

/// Reads the configuration at `path`, following its `include`s.
///
/// Relative `include` paths resolve against the directory of `path`, as nginx
/// resolves them against its configuration prefix (the directory of nginx.conf).
pub fn parse_file(path: &Path) -> Result<Vec<Directive>, ParseError> {
    let bytes =
        std::fs::read(path).map_err(|source| ParseError::Read { place: None, path: path.to_path_buf(), source })?;
    let prefix = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_bytes(&bytes, Arc::from(path), &prefix, 0)
}

/// Parses `text` as if read from `file`; relative `include`s resolve against
/// the directory of `file`.
pub fn parse_str(text: &str, file: &Path) -> Result<Vec<Directive>, ParseError> {
    let prefix = file.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_bytes(text.as_bytes(), Arc::from(file), &prefix, 0)
}

#[derive(Debug)]
enum Token {
    Word(String, usize),
    Semicolon(usize),
    Open(usize),
    Close(usize),
}

fn syntax(file: &Arc<Path>, line: usize, message: impl Into<String>) -> ParseError {
    ParseError::Syntax { place: Place { file: Arc::clone(file), line }, message: message.into() }
}

/// Splits `src` into words and punctuation, dropping comments.
fn tokenize(src: &[u8], file: &Arc<Path>) -> Result<(Vec<Token>, usize), ParseError> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while let Some(&c) = src.get(i) {
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while src.get(i).is_some_and(|&b| b != b'\n') {
                    i += 1;
                }
            }
            b';' => {
                tokens.push(Token::Semicolon(line));
                i += 1;
            }
            b'{' => {
                tokens.push(Token::Open(line));
                i += 1;
            }
            b'}' => {
                tokens.push(Token::Close(line));
                i += 1;
            }
            b'"' | b'\'' => {
                let start = line;
                let mut raw = Vec::new();
                i += 1;
                loop {
                    let Some(&b) = src.get(i) else {
                        return Err(syntax(
                            file,
                            start,
                            format!("unexpected end of file in a {}-quoted string", c as char),
                        ));
                    };
                    if b == b'\\' {
                        raw.push(b);
                        if let Some(&next) = src.get(i + 1) {
                            raw.push(next);
                            line += usize::from(next == b'\n');
                        }
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if b == c {
                        break;
                    }
                    line += usize::from(b == b'\n');
                    raw.push(b);
                }
                // nginx wants a separator after a closing quote.
                if let Some(&b) = src.get(i)
                    && !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{')
                {
                    return Err(syntax(file, line, format!("unexpected \"{}\" after a quoted string", b as char)));
                }
                tokens.push(Token::Word(unescape(&raw), start));
            }
            _ => {
                let start = line;
                let mut raw = Vec::new();
                let mut variable = false;
                while let Some(&b) = src.get(i) {
                    if b == b'{' && variable {
                        // `${name}`: the brace belongs to the variable, not a block.
                        raw.push(b);
                        i += 1;
                        variable = false;
                        continue;
                    }
                    if matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{') {
                        break;
                    }
                    raw.push(b);
                    i += 1;
                    variable = b == b'$';
                    if b == b'\\'
                        && let Some(&next) = src.get(i)
                    {
                        raw.push(next);
                        line += usize::from(next == b'\n');
                        i += 1;
                    }
                }
                tokens.push(Token::Word(unescape(&raw), start));
            }
        }
    }
    Ok((tokens, line))
}

/// Applies nginx's escapes: `\"`, `\'`, `\\`, `\t`, `\r`, `\n`; any other
/// backslash is kept (regular expressions need them).
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\\'
            && let Some(&next) = raw.get(i + 1)
        {
            match next {
                b'"' | b'\'' | b'\\' => out.push(next),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                _ => out.extend_from_slice(&[b, next]),
            }
            i += 2;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An open block while parsing: the directive that opened it and its children so far.
struct Frame {
    name: String,
    args: Vec<String>,
    place: Place,
    outer: Vec<Directive>,
}

fn parse_bytes(src: &[u8], file: Arc<Path>, prefix: &Path, depth: usize) -> Result<Vec<Directive>, ParseError> {
    let (tokens, last_line) = tokenize(src, &file)?;
    let mut stack: Vec<Frame> = Vec::new();
    let mut current: Vec<Directive> = Vec::new();
    let mut words: Vec<(String, usize)> = Vec::new();
    for token in tokens {
        match token {
            Token::Word(word, line) => words.push((word, line)),
            Token::Semicolon(line) => {
                let mut parts = std::mem::take(&mut words).into_iter();
                let Some((name, at)) = parts.next() else {
                    return Err(syntax(&file, line, "unexpected \";\""));
                };
                let place = Place { file: Arc::clone(&file), line: at };
                let args: Vec<String> = parts.map(|(w, _)| w).collect();
                if name == "include" {
                    current.extend(include(&args, &place, prefix, depth)?);
                } else {
                    current.push(Directive { name, args, block: None, place });
                }
            }
            Token::Open(line) => {
                let mut parts = std::mem::take(&mut words).into_iter();
                let Some((name, at)) = parts.next() else {
                    return Err(syntax(&file, line, "unexpected \"{\""));
                };
                if stack.len() >= MAX_BLOCK_DEPTH {
                    return Err(syntax(&file, line, format!("blocks nested deeper than {MAX_BLOCK_DEPTH}")));
                }
                stack.push(Frame {
                    name,
                    args: parts.map(|(w, _)| w).collect(),
                    place: Place { file: Arc::clone(&file), line: at },
                    outer: std::mem::take(&mut current),
                });
            }
            Token::Close(line) => {
                if !words.is_empty() {
                    return Err(syntax(&file, line, "unexpected \"}\": the directive before it has no \";\""));
                }
                let Some(frame) = stack.pop() else {
                    return Err(syntax(&file, line, "unexpected \"}\": no block is open"));
                };
                let block = std::mem::replace(&mut current, frame.outer);
                current.push(Directive { name: frame.name, args: frame.args, block: Some(block), place: frame.place });
            }
        }
    }
    if !words.is_empty() {
        return Err(syntax(&file, last_line, "unexpected end of file, expecting \";\" or \"}\""));
    }
    if let Some(frame) = stack.last() {
        return Err(syntax(
            &file,
            last_line,
            format!(
                "unexpected end of file, expecting \"}}\" (the \"{}\" block of line {} is not closed)",
                frame.name, frame.place.line
            ),
        ));
    }
    Ok(current)
}

/// Reads the files an `include` names; a pattern may match none (as nginx's glob).
fn include(args: &[String], place: &Place, prefix: &Path, depth: usize) -> Result<Vec<Directive>, ParseError> {
    let [pattern] = args else {
        return Err(ParseError::Syntax {
            place: place.clone(),
            message: "include takes one file name or pattern".into(),
        });
    };
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(ParseError::Syntax {
            place: place.clone(),
            message: format!("include {pattern:?}: includes nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)"),
        });
    }
    let full = prefix.join(pattern);
    let files = if pattern.contains(['*', '?', '[']) { glob(&full) } else { vec![full] };
    let mut directives = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).map_err(|source| ParseError::Read {
            place: Some(place.clone()),
            path: path.clone(),
            source,
        })?;
        directives.extend(parse_bytes(&bytes, Arc::from(path.as_path()), prefix, depth + 1)?);
    }
    Ok(directives)
}

/// The files matching `pattern` (`*`, `?` and `[...]` in any component), sorted
/// as glob(3) sorts them; names starting with `.` match only a pattern that does.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str();
        let Some(text) = part.to_str().filter(|t| t.contains(['*', '?', '['])) else {
            candidates.iter_mut().for_each(|c| c.push(part));
            continue;
        };
        let mut next = Vec::new();
        for dir in &candidates {
            let listing = if dir.as_os_str().is_empty() { Path::new(".") } else { dir.as_path() };
            let Ok(entries) = std::fs::read_dir(listing) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if (!name.starts_with('.') || text.starts_with('.')) && wildcard_match(text.as_bytes(), name.as_bytes())
                {
                    next.push(dir.join(name));
                }
            }
        }
        candidates = next;
    }
    candidates.retain(|p| p.is_file());
    candidates.sort();
    candidates
}

/// Shell wildcard matching of one path component, without recursion: on a
/// mismatch, the last `*` takes one more character.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, len)) = class_match(&pattern[p..], name[n])
                    && matched
                {
                    p += len;
                    n += 1;
                    continue;
                }
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*')
}

/// Whether `c` is in the class `[...]` at the start of `pattern`, and the
/// class's length; `None` when the bracket is not closed.
fn class_match(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    i += usize::from(negated);
    let mut matched = false;
    let mut first = true;
    loop {
        let &lo = pattern.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-')
            && let Some(&hi) = pattern.get(i + 2).filter(|&&hi| hi != b']')
        {
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Directive>, ParseError> {
        parse_str(text, Path::new("nginx.conf"))
    }

    #[test]
    fn nginx_directives_blocks_and_lines() {
        let d = parse("upstream am {\n  server 10.0.0.1:9443 weight=2;\n}\nserver {\n  listen 443 ssl;\n}\n").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].name.as_str(), d[0].args.as_slice(), d[0].place.line),
            ("upstream", &["am".to_owned()][..], 1)
        );
        let inner = d[0].block.as_ref().unwrap();
        assert_eq!(inner[0].args, ["10.0.0.1:9443", "weight=2"]);
        assert_eq!(inner[0].place.to_string(), "nginx.conf:2");
        assert_eq!(d[1].block.as_ref().unwrap()[0].place.line, 5);
    }

    #[test]
    fn nginx_quotes_escapes_and_variables() {
        let d = parse("a \"x y\" 'it s' \"q\\\"t\\n\" ${host}x $var;\nb \\.jpg$ foo#bar;\nc \"multi\nline\";\nd \"\";")
            .unwrap();
        assert_eq!(d[0].args, ["x y", "it s", "q\"t\n", "${host}x", "$var"]);
        assert_eq!(d[1].args, ["\\.jpg$", "foo#bar"], "# inside a word is not a comment");
        assert_eq!(d[2].args, ["multi\nline"]);
        assert_eq!(d[3].place.line, 5, "a newline inside quotes counts");
        assert_eq!(d[3].args, [""]);
    }

    #[test]
    fn nginx_comment_runs_to_end_of_line() {
        let d = parse("upstream u {\n  server 10.0.0.1:80;\n  #ip_hash; sticky learn create=$upstream_cookie_x lookup=$cookie_x zone=z:1m;\n}\n").unwrap();
        let inner = d[0].block.as_ref().unwrap();
        assert_eq!(inner.len(), 1, "{inner:?}");
        assert_eq!(inner[0].name, "server");
    }

    /// The WSO2 guide's configurations, flattened onto one line: `#ip_hash;`
    /// swallows the sticky directive, the upstream's `}` and everything after it,
    /// so nginx itself would refuse the file.
    #[test]
    fn nginx_flattened_ip_hash_comment_swallows_the_rest_of_the_line() {
        let flat = "upstream sslapi.am.wso2.com { server 10.0.0.1:9443; server 10.0.0.2:9443; #ip_hash; sticky learn create=$upstream_cookie_jsessionid lookup=$cookie_jsessionid zone=client_sessions:1m; } server { listen 80; server_name api.am.wso2.com; }";
        let err = parse(flat).unwrap_err().to_string();
        assert_eq!(
            err,
            "nginx.conf:1: unexpected end of file, expecting \"}\" (the \"upstream\" block of line 1 is not closed)"
        );
        // Laid out one directive per line, the same text is what its author meant.
        let laid_out = flat.replace("; ", ";\n").replace("{ ", "{\n").replace("} ", "}\n");
        let d = parse(&laid_out).unwrap();
        assert_eq!(d.len(), 2);
        let inner = d[0].block.as_ref().unwrap();
        assert_eq!(inner.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["server", "server", "sticky"]);
    }

    #[test]
    fn nginx_errors_name_file_and_line() {
        let cases = [
            ("a b\n;\n;", "nginx.conf:3: unexpected \";\""),
            ("server {\n listen 80\n}", "nginx.conf:3: unexpected \"}\": the directive before it has no \";\""),
            ("a;\n}", "nginx.conf:2: unexpected \"}\": no block is open"),
            ("\n{", "nginx.conf:2: unexpected \"{\""),
            ("a b", "nginx.conf:1: unexpected end of file, expecting \";\" or \"}\""),
            ("a \"b\nc", "nginx.conf:1: unexpected end of file in a \"-quoted string"),
            ("a \"b\"c;", "nginx.conf:1: unexpected \"c\" after a quoted string"),
            ("a 'b''c';", "nginx.conf:1: unexpected \"'\" after a quoted string"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), expected, "{text:?}");
        }
    }

    #[test]
    fn nginx_no_panic_on_garbage_or_truncated_input() {
        let config = "http {\n upstream u { server 10.0.0.1:9443 weight=2; ip_hash; }\n server { listen 443 ssl; server_name \"a\" 'b'; location / { proxy_pass https://u; proxy_set_header Host $http_host; } }\n}\n# end\n";
        for end in 0..=config.len() {
            let _ = parse(&config[..end]);
        }
        // A small xorshift generator: reproducible, no dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"{};#\"'\\$ \n\tab1";
        for round in 0..2000 {
            let len = round % 200;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let pick = (state % 300) as usize;
                bytes.push(alphabet.get(pick).copied().unwrap_or((state >> 8) as u8));
            }
            let _ = parse_bytes(&bytes, Arc::from(Path::new("garbage")), Path::new("/nonexistent"), 0);
        }
        let deep = "a {".repeat(10_000);
        assert!(parse(&deep).unwrap_err().to_string().contains("nested deeper"));
    }

    #[test]
    fn nginx_include_glob_relative_and_sorted() {
        let dir = std::env::temp_dir().join(format!("portico-nginx-include-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "b;\n").unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "\na;\n").unwrap();
        std::fs::write(dir.join("conf.d/.hidden.conf"), "hidden;\n").unwrap();
        std::fs::write(dir.join("conf.d/c.txt"), "c;\n").unwrap();
        std::fs::write(dir.join("nginx.conf"), "http {\n include conf.d/*.conf;\n include none/*.conf;\n}\n").unwrap();
        let d = parse_file(&dir.join("nginx.conf")).unwrap();
        let inner = d[0].block.as_ref().unwrap();
        let found: Vec<String> = inner.iter().map(|d| format!("{} {}", d.name, d.place)).collect();
        assert_eq!(
            found,
            [
                format!("a {}:2", dir.join("conf.d/a.conf").display()),
                format!("b {}:1", dir.join("conf.d/b.conf").display())
            ]
        );

        std::fs::write(dir.join("loop.conf"), "include loop.conf;\n").unwrap();
        let err = parse_file(&dir.join("loop.conf")).unwrap_err().to_string();
        assert!(err.contains("nested deeper"), "{err}");

        std::fs::write(dir.join("missing.conf"), "\ninclude nothere.conf;\n").unwrap();
        let err = parse_file(&dir.join("missing.conf")).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}:2: cannot read {}",
                dir.join("missing.conf").display(),
                dir.join("nothere.conf").display()
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nginx_wildcards() {
        assert!(wildcard_match(b"*.conf", b"a.conf"));
        assert!(wildcard_match(b"*.conf", b".conf"));
        assert!(!wildcard_match(b"*.conf", b"a.conf.bak"));
        assert!(wildcard_match(b"a?c*", b"abcdef"));
        assert!(wildcard_match(b"[a-c]x", b"bx"));
        assert!(!wildcard_match(b"[!a-c]x", b"bx"));
        assert!(!wildcard_match(b"[a", b"a"));
        assert!(wildcard_match(b"**", b""));
    }
}
