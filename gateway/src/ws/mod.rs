//! WebSockets: the upgrade and admission ([`upgrade`]), one socket's read
//! task ([`socket`]) over the RFC 6455 reader ([`reader`]), its write task
//! ([`writer`]) with its lazily allocated buffer ([`wbuf`]) and the
//! ordering rules it applies ([`ordering`]), and the test-only echo route
//! ([`echo`]).

pub mod echo;
pub mod ordering;
pub mod reader;
pub mod socket;
pub mod upgrade;
pub mod wbuf;
pub mod writer;

use fastwebsockets::{WebSocketRead, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{ReadHalf, WriteHalf};

type Io = TokioIo<Upgraded>;
type Reader = WebSocketRead<ReadHalf<Io>>;
type Writer = WebSocketWrite<wbuf::LazyBufWriter<WriteHalf<Io>>>;
