//! The label selector syntax, parsed as apimachinery's `labels.Parser`
//! does, so that the same inputs are accepted and the same errors named.

use super::label::{Op, Requirement};
use super::names::{check_key, check_value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'a> {
    End,
    /// Also `in` and `notin`: whether those are operators depends on position.
    Ident(&'a str),
    OpenPar,
    ClosePar,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
}

impl<'a> Token<'a> {
    fn text(self) -> &'a str {
        match self {
            Token::End => "",
            Token::Ident(s) => s,
            Token::OpenPar => "(",
            Token::ClosePar => ")",
            Token::Comma => ",",
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

pub(super) fn tokenize(s: &str) -> Vec<Token<'_>> {
    let bytes = s.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_space(b) {
            i += 1;
            continue;
        }
        let two = bytes.get(i + 1) == Some(&b'=');
        let (token, len) = match b {
            b'=' if two => (Token::DoubleEquals, 2),
            b'!' if two => (Token::NotEquals, 2),
            b'=' => (Token::Equals, 1),
            b'!' => (Token::Bang, 1),
            b'(' => (Token::OpenPar, 1),
            b')' => (Token::ClosePar, 1),
            b',' => (Token::Comma, 1),
            b'>' => (Token::Greater, 1),
            b'<' => (Token::Less, 1),
            _ => {
                let len = bytes[i..]
                    .iter()
                    .position(|&c| is_space(c) || is_special(c))
                    .unwrap_or(bytes.len() - i);
                // Identifiers end at ASCII bytes, so both ends are char boundaries.
                (Token::Ident(&s[i..i + len]), len)
            }
        };
        tokens.push(token);
        i += len;
    }
    tokens
}

/// A recursive-descent parser following apimachinery's `labels.Parser`, so
/// that the same inputs are accepted and the same errors named.
pub(super) struct Parser<'a> {
    pub(super) tokens: Vec<Token<'a>>,
    pub(super) pos: usize,
}

type Syntax<T> = Result<T, String>;

impl<'a> Parser<'a> {
    fn peek(&self) -> Token<'a> {
        self.tokens.get(self.pos).copied().unwrap_or(Token::End)
    }

    fn consume(&mut self) -> Token<'a> {
        let token = self.peek();
        self.pos += 1;
        token
    }

    pub(super) fn selector(&mut self) -> Syntax<Vec<Requirement>> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::Ident(_) | Token::Bang => {
                    requirements.push(self.requirement()?);
                    match self.consume() {
                        Token::End => return Ok(requirements),
                        Token::Comma => match self.peek() {
                            Token::Ident(_) | Token::Bang => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.text()
                                ))
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.text()
                            ))
                        }
                    }
                }
                Token::End => return Ok(requirements),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.text()
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Syntax<Requirement> {
        let negated = self.peek() == Token::Bang;
        if negated {
            self.consume();
        }
        let key = match self.consume() {
            Token::Ident(key) => key,
            t => return Err(format!("found '{}', expected: identifier", t.text())),
        };
        check_key(key).map_err(|e| e.message)?;
        let requirement = |op| Requirement {
            key: key.to_owned(),
            op,
        };
        // What follows `!k` is left to the caller, which names it.
        if negated {
            return Ok(requirement(Op::DoesNotExist));
        }
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(requirement(Op::Exists));
        }
        let op = match self.consume() {
            Token::Ident("in") => Op::In(self.values()?),
            Token::Ident("notin") => Op::NotIn(self.values()?),
            Token::Equals => Op::Equals(self.exact_value()?.to_owned()),
            Token::DoubleEquals => Op::DoubleEquals(self.exact_value()?.to_owned()),
            Token::NotEquals => Op::NotEquals(self.exact_value()?.to_owned()),
            t @ (Token::Greater | Token::Less) => {
                let text = self.exact_value()?;
                let bound = text.parse().map_err(|_| {
                    format!(
                        "values[0]: Invalid value: {text:?}: for 'Gt', 'Lt' operators, \
                         the value must be an integer"
                    )
                })?;
                if t == Token::Greater {
                    Op::GreaterThan(text.to_owned(), bound)
                } else {
                    Op::LessThan(text.to_owned(), bound)
                }
            }
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.text()
                ))
            }
        };
        let values: &[String] = match &op {
            Op::In(vs) | Op::NotIn(vs) => vs,
            Op::Equals(v) | Op::DoubleEquals(v) | Op::NotEquals(v) => std::slice::from_ref(v),
            Op::GreaterThan(v, _) | Op::LessThan(v, _) => std::slice::from_ref(v),
            Op::Exists | Op::DoesNotExist => &[],
        };
        for (i, v) in values.iter().enumerate() {
            check_value(key, i, v).map_err(|e| e.message)?;
        }
        Ok(requirement(op))
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing there means `""`.
    fn exact_value(&mut self) -> Syntax<&'a str> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok("");
        }
        match self.consume() {
            Token::Ident(v) => Ok(v),
            t => Err(format!("found '{}', expected: identifier", t.text())),
        }
    }

    /// `(a,b,...)`, sorted and deduplicated like Go's string set. Empty
    /// entries (`()`, `(,a)`, `(a,)`, `(a,,b)`) stand for the empty value.
    fn values(&mut self) -> Syntax<Vec<String>> {
        match self.consume() {
            Token::OpenPar => {}
            t => return Err(format!("found '{}', expected: '('", t.text())),
        }
        let mut set: Vec<&str> = Vec::new();
        match self.peek() {
            Token::ClosePar => {
                self.consume();
                set.push("");
            }
            Token::Ident(_) | Token::Comma => self.identifiers(&mut set)?,
            t => {
                return Err(format!(
                    "found '{}', expected: ',', ')' or identifier",
                    t.text()
                ))
            }
        }
        set.sort_unstable();
        set.dedup();
        Ok(set.into_iter().map(str::to_owned).collect())
    }

    /// The list inside `(...)`, through the closing parenthesis.
    fn identifiers(&mut self, set: &mut Vec<&'a str>) -> Syntax<()> {
        loop {
            match self.consume() {
                Token::Ident(v) => {
                    set.push(v);
                    match self.peek() {
                        Token::Comma => {}
                        Token::ClosePar => {
                            self.consume();
                            return Ok(());
                        }
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.text())),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.push("");
                    }
                    match self.peek() {
                        Token::ClosePar => {
                            self.consume();
                            set.push("");
                            return Ok(());
                        }
                        Token::Comma => set.push(""),
                        _ => {}
                    }
                }
                t => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.text()
                    ))
                }
            }
        }
    }
}
