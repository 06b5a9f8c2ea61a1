//! Tokens → an untyped syntax tree, every node with its span.
//!
//! Precedence, loosest first: `or` (`||`), `and` (`&&`), `not` (`!`), a comparison
//! (`==` `!=` `<` `<=` `>` `>=` `contains` `starts_with` `ends_with` `matches` (`~`)
//! `in`), then a value with its indexes (`x["name"]`, `x[0]`, `x[*]`). Comparisons do
//! not chain: `a == b == c` is an error, not a surprise.

use std::net::IpAddr;

use rampart_core::net::Cidr;

use super::lexer::Tok;
use super::{ExprError, Span};

/// A node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A field, function or keyword used as a value (`tls`, `true`).
    Name(String),
    Str(Vec<u8>),
    Int(i64),
    Ip(IpAddr),
    Index(Box<Node>, Index),
    Call(String, Vec<Node>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(Box<Node>, CmpOp, Box<Node>),
    In(Box<Node>, SetExpr),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Index {
    Key(Vec<u8>),
    Pos(usize),
    Star,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

impl CmpOp {
    pub(crate) fn text(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Contains => "contains",
            CmpOp::StartsWith => "starts_with",
            CmpOp::EndsWith => "ends_with",
            CmpOp::Matches => "matches",
        }
    }
}

/// The right side of `in`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SetExpr {
    /// `{ … }`
    Items(Vec<(Item, Span)>),
    /// `$name`
    List(String, Span),
}

/// A member of a literal set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Str(Vec<u8>),
    Int(i64),
    IntRange(i64, i64),
    Ip(IpAddr),
    Net(Cidr),
    IpRange(IpAddr, IpAddr),
}

const COMPARISONS: &str =
    "`==`, `!=`, `<`, `<=`, `>`, `>=`, `contains`, `starts_with`, `ends_with`, `matches` or `in`";

/// Parses a whole expression.
pub(crate) fn parse(tokens: Vec<(Tok, Span)>) -> Result<Node, ExprError> {
    let mut p = Parser {
        toks: tokens,
        at: 0,
        depth: 0,
    };
    let node = p.or()?;
    let (tok, span) = p.peek();
    if *tok != Tok::Eof {
        let bare = !matches!(
            node.kind,
            Kind::Cmp(..) | Kind::In(..) | Kind::And(..) | Kind::Or(..) | Kind::Not(..)
        );
        if bare {
            return Err(
                ExprError::new(span, format!("unexpected {}", tok.describe())).expected(format!(
                    "an operator ({COMPARISONS}), `and`, `or` or the end of the expression"
                )),
            );
        }
        let message = format!("unexpected {} after a complete condition", tok.describe());
        return Err(ExprError::new(span, message)
            .expected("`and`, `or` or the end of the expression")
            .hint("conditions are joined with `and` / `or`; a comparison takes one operator"));
    }
    Ok(node)
}

/// Deep nesting is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<(Tok, Span)>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> (&Tok, Span) {
        let (t, s) = &self.toks[self.at.min(self.toks.len() - 1)];
        (t, *s)
    }

    fn bump(&mut self) -> (Tok, Span) {
        let i = self.at.min(self.toks.len() - 1);
        self.at += 1;
        self.toks[i].clone()
    }

    fn is_name(&self, word: &str) -> bool {
        matches!(self.peek().0, Tok::Name(n) if n == word)
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Span, ExprError> {
        let (tok, span) = self.peek();
        if *tok == want {
            self.at += 1;
            return Ok(span);
        }
        Err(ExprError::new(span, format!("unexpected {}", tok.describe())).expected(what))
    }

    fn nest(&mut self, span: Span) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                span,
                format!("the expression nests deeper than {MAX_DEPTH} levels"),
            )
            .hint("split it into several rules"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        self.joined(Tok::OrOr, "or", Self::and, Kind::Or)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        self.joined(Tok::AndAnd, "and", Self::not, Kind::And)
    }

    /// Operands of `next` joined, left to right, by `symbol` or `word`.
    fn joined(
        &mut self,
        symbol: Tok,
        word: &str,
        next: fn(&mut Self) -> Result<Node, ExprError>,
        make: fn(Box<Node>, Box<Node>) -> Kind,
    ) -> Result<Node, ExprError> {
        let mut left = next(self)?;
        while *self.peek().0 == symbol || self.is_name(word) {
            self.bump();
            let right = next(self)?;
            let span = left.span.to(right.span);
            left = Node {
                kind: make(Box::new(left), Box::new(right)),
                span,
            };
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        if matches!(self.peek().0, Tok::Bang) || self.is_name("not") {
            let (_, start) = self.bump();
            self.nest(start)?;
            let inner = self.not()?;
            self.depth -= 1;
            let span = start.to(inner.span);
            return Ok(Node {
                kind: Kind::Not(Box::new(inner)),
                span,
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, ExprError> {
        let left = self.value()?;
        let (tok, op_span) = self.peek();
        let op = match tok {
            Tok::EqEq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Tilde => CmpOp::Matches,
            Tok::Name(n) => match n.as_str() {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "lt" => CmpOp::Lt,
                "le" => CmpOp::Le,
                "gt" => CmpOp::Gt,
                "ge" => CmpOp::Ge,
                "contains" => CmpOp::Contains,
                "starts_with" => CmpOp::StartsWith,
                "ends_with" => CmpOp::EndsWith,
                "matches" => CmpOp::Matches,
                "in" => {
                    self.bump();
                    let set = self.set()?;
                    let end = match &set {
                        SetExpr::Items(_) => self.toks[self.at - 1].1,
                        SetExpr::List(_, s) => *s,
                    };
                    let span = left.span.to(end);
                    return self.no_chain(Node {
                        kind: Kind::In(Box::new(left), set),
                        span,
                    });
                }
                _ => return Ok(left),
            },
            _ => return Ok(left),
        };
        self.bump();
        let (next, next_span) = self.peek();
        if matches!(next, Tok::Eof | Tok::RParen)
            || matches!(next, Tok::Name(n) if n == "and" || n == "or")
        {
            return Err(ExprError::new(
                next_span,
                format!("`{}` needs a value on its right", op.text()),
            )
            .expected("a value or a field"));
        }
        let _ = op_span;
        let right = self.value()?;
        let span = left.span.to(right.span);
        self.no_chain(Node {
            kind: Kind::Cmp(Box::new(left), op, Box::new(right)),
            span,
        })
    }

    /// A comparison is not followed by another comparison operator.
    fn no_chain(&self, node: Node) -> Result<Node, ExprError> {
        let (tok, span) = self.peek();
        let chained = match tok {
            Tok::EqEq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge | Tok::Tilde => true,
            Tok::Name(n) => matches!(
                n.as_str(),
                "eq" | "ne"
                    | "lt"
                    | "le"
                    | "gt"
                    | "ge"
                    | "contains"
                    | "starts_with"
                    | "ends_with"
                    | "matches"
                    | "in"
            ),
            _ => false,
        };
        if chained {
            return Err(ExprError::new(
                span,
                format!("comparisons do not chain: unexpected {}", tok.describe()),
            )
            .expected("`and`, `or` or `)`")
            .hint("write `a < x and x < b`, or `x in {a..b}`"));
        }
        Ok(node)
    }

    fn value(&mut self) -> Result<Node, ExprError> {
        let mut node = self.primary()?;
        while matches!(self.peek().0, Tok::LBracket) {
            self.bump();
            let (tok, span) = self.bump();
            let index = match tok {
                Tok::Str(s) => Index::Key(s),
                Tok::Int(i) => match usize::try_from(i) {
                    Ok(i) => Index::Pos(i),
                    Err(_) => {
                        return Err(ExprError::new(span, "an index cannot be negative")
                            .expected("0, 1, 2, …"));
                    }
                },
                Tok::Star => Index::Star,
                other => {
                    return Err(ExprError::new(
                        span,
                        format!("unexpected {} in brackets", other.describe()),
                    )
                    .expected(
                        "a name in quotes (`[\"x-api-key\"]`), a position (`[0]`) or `[*]`",
                    ));
                }
            };
            let end = self.expect(Tok::RBracket, "`]`")?;
            let span = node.span.to(end);
            node = Node {
                kind: Kind::Index(Box::new(node), index),
                span,
            };
        }
        Ok(node)
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let (tok, span) = self.bump();
        let kind = match tok {
            Tok::Str(s) => Kind::Str(s),
            Tok::Int(i) => Kind::Int(i),
            Tok::Ip(ip) => Kind::Ip(ip),
            Tok::Minus => match self.bump() {
                (Tok::Int(i), s) => {
                    return Ok(Node {
                        kind: Kind::Int(-i),
                        span: span.to(s),
                    });
                }
                (other, s) => {
                    return Err(ExprError::new(
                        s,
                        format!("unexpected {} after `-`", other.describe()),
                    )
                    .expected("a number"));
                }
            },
            Tok::LParen => {
                self.nest(span)?;
                let inner = self.or()?;
                self.depth -= 1;
                let end = self.expect(Tok::RParen, "`)` to close the `(`")?;
                return Ok(Node {
                    kind: inner.kind,
                    span: span.to(end),
                });
            }
            Tok::Name(name) => {
                if matches!(self.peek().0, Tok::LParen) {
                    self.bump();
                    self.nest(span)?;
                    let mut args = Vec::new();
                    if !matches!(self.peek().0, Tok::RParen) {
                        loop {
                            args.push(self.or()?);
                            if matches!(self.peek().0, Tok::Comma) {
                                self.bump();
                                continue;
                            }
                            break;
                        }
                    }
                    self.depth -= 1;
                    let end = self.expect(Tok::RParen, "`,` or `)` to close the call")?;
                    return Ok(Node {
                        kind: Kind::Call(name, args),
                        span: span.to(end),
                    });
                }
                if is_keyword(&name) {
                    return Err(ExprError::new(span, format!("unexpected `{name}`"))
                        .expected("a field, a value, `not` or `(`"));
                }
                Kind::Name(name)
            }
            Tok::Net(n) => {
                return Err(ExprError::new(
                    span,
                    format!("a network ({n}) can only be a member of a set"),
                )
                .expected("a value")
                .hint(format!("write `ip.src in {{{n}}}`")));
            }
            Tok::List(l) => {
                return Err(
                    ExprError::new(span, format!("a list (${l}) can only follow `in`"))
                        .hint(format!("write `ip.src in ${l}`")),
                );
            }
            Tok::LBrace => {
                return Err(ExprError::new(span, "a set can only follow `in`")
                    .hint("write `field in { … }`"));
            }
            other => {
                return Err(
                    ExprError::new(span, format!("unexpected {}", other.describe()))
                        .expected("a field, a value, `not` or `(`"),
                );
            }
        };
        Ok(Node { kind, span })
    }

    fn set(&mut self) -> Result<SetExpr, ExprError> {
        let (tok, span) = self.bump();
        match tok {
            Tok::List(name) => return Ok(SetExpr::List(name, span)),
            Tok::LBrace => {}
            other => {
                return Err(ExprError::new(
                    span,
                    format!("unexpected {} after `in`", other.describe()),
                )
                .expected("a set `{ … }` or a list `$name`"));
            }
        }
        let mut items = Vec::new();
        loop {
            let (tok, span) = self.bump();
            let item = match tok {
                Tok::RBrace => break,
                Tok::Comma => continue,
                Tok::Str(s) => Item::Str(s),
                Tok::Int(i) => Item::Int(i),
                Tok::Minus => match self.bump() {
                    (Tok::Int(i), _) => Item::Int(-i),
                    (other, s) => {
                        return Err(ExprError::new(
                            s,
                            format!("unexpected {} after `-`", other.describe()),
                        )
                        .expected("a number"));
                    }
                },
                Tok::Ip(ip) => Item::Ip(ip),
                Tok::Net(n) => Item::Net(n),
                Tok::Eof => {
                    return Err(ExprError::new(span, "the set is not closed").expected("`}`"));
                }
                other => {
                    return Err(ExprError::new(
                        span,
                        format!("unexpected {} in a set", other.describe()),
                    )
                    .expected(
                        "strings, integers, addresses, networks or ranges (`1..9`), then `}`",
                    ));
                }
            };
            let mut item_span = span;
            let item = if matches!(self.peek().0, Tok::DotDot) {
                self.bump();
                let (hi, hi_span) = self.bump();
                item_span = span.to(hi_span);
                match (item, hi) {
                    (Item::Int(a), Tok::Int(b)) if a <= b => Item::IntRange(a, b),
                    (Item::Ip(a), Tok::Ip(b)) if a.is_ipv4() == b.is_ipv4() && a <= b => {
                        Item::IpRange(a, b)
                    }
                    (Item::Int(_) | Item::Ip(_), _) => {
                        return Err(ExprError::new(
                            item_span,
                            "this range is empty or mixes kinds",
                        )
                        .expected(
                            "`low..high` of two integers or two addresses of one family, low first",
                        ));
                    }
                    _ => {
                        return Err(ExprError::new(
                            item_span,
                            "only integers and addresses make ranges",
                        )
                        .expected("`1..9` or `10.0.0.1..10.0.0.9`"));
                    }
                }
            } else {
                item
            };
            items.push((item, item_span));
        }
        Ok(SetExpr::Items(items))
    }
}

fn is_keyword(name: &str) -> bool {
    matches!(
        name,
        "and"
            | "or"
            | "not"
            | "in"
            | "eq"
            | "ne"
            | "lt"
            | "le"
            | "gt"
            | "ge"
            | "contains"
            | "starts_with"
            | "ends_with"
            | "matches"
    )
}
