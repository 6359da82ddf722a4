//! Values crossing the SQL boundary: parameters (`Val`, `Arg`, `Params`, `args!`) bound
//! loosely to either backend, and columns read back (`Col`). PostgreSQL infers parameter
//! types from the statement while SQLite has none, so an integer binds to any integer or
//! text column and a text to text or bytes. Owns no query.

use std::error::Error as StdError;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::sql::{DbError, DbResult};

/// A bound value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// Something that binds as a parameter.
pub(crate) trait Arg {
    fn val(&self) -> Val<'_>;
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn val(&self) -> Val<'_> {
                Val::Int(*self as i64)
            }
        }
    )*};
}
int_arg!(i64, i32, u16, u32, u64, usize);

impl Arg for bool {
    fn val(&self) -> Val<'_> {
        Val::Int(i64::from(*self))
    }
}
impl Arg for f64 {
    fn val(&self) -> Val<'_> {
        Val::Real(*self)
    }
}
impl Arg for str {
    fn val(&self) -> Val<'_> {
        Val::Text(self)
    }
}
impl Arg for String {
    fn val(&self) -> Val<'_> {
        Val::Text(self)
    }
}
impl Arg for [u8] {
    fn val(&self) -> Val<'_> {
        Val::Blob(self)
    }
}
impl Arg for Vec<u8> {
    fn val(&self) -> Val<'_> {
        Val::Blob(self)
    }
}
impl<T: Arg> Arg for Option<T> {
    fn val(&self) -> Val<'_> {
        self.as_ref().map_or(Val::Null, Arg::val)
    }
}
impl<T: Arg + ?Sized> Arg for &T {
    fn val(&self) -> Val<'_> {
        (**self).val()
    }
}

/// The parameters of one statement.
pub(crate) trait Params {
    fn vals(&self) -> Vec<Val<'_>>;
}

impl Params for &[&dyn Arg] {
    fn vals(&self) -> Vec<Val<'_>> {
        self.iter().map(|a| a.val()).collect()
    }
}
impl Params for [&dyn Arg; 0] {
    fn vals(&self) -> Vec<Val<'_>> {
        Vec::new()
    }
}
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: Arg> Params for [T; $n] {
            fn vals(&self) -> Vec<Val<'_>> {
                self.iter().map(Arg::val).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4);

/// `locked!(db, "SELECT … FROM runs WHERE …")`: the query, ending in `FOR UPDATE` on
/// PostgreSQL, where writers run concurrently (several nodes); SQLite's one writer needs no
/// row lock. For reads that a write in the same transaction depends on.
macro_rules! locked {
    ($db:expr, $sql:literal) => {
        if $db.is_pg() {
            concat!($sql, " FOR UPDATE")
        } else {
            $sql
        }
    };
}
pub(crate) use locked;

/// `args![a, b, …]`: statement parameters of mixed types.
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        &[$(&$x as &dyn $crate::store::sql::Arg),*] as &[&dyn $crate::store::sql::Arg]
    };
}
pub(crate) use args;

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(i),
            Val::Real(f) => ValueRef::Real(f),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
            Val::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for Val<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let mut int = |i: i64| -> Result<IsNull, BoxError> {
            match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                _ => i.to_string().as_str().to_sql(&Type::TEXT, out),
            }
        };
        match *self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => int(i),
            Val::Real(f) => match *ty {
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => f.to_sql(&Type::FLOAT8, out),
            },
            Val::Text(s) => match *ty {
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => s.to_sql(&Type::TEXT, out),
            },
            Val::Blob(b) => b.to_sql(&Type::BYTEA, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
        )
    }

    to_sql_checked!();
}

/// A column value read back.
pub(crate) trait Col: Sized {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> DbResult<Self>;
    fn pg(r: &postgres::Row, i: usize) -> DbResult<Self>;
}

fn pg_int(r: &postgres::Row, i: usize) -> DbResult<Option<i64>> {
    let ty = r.columns().get(i).map(|c| c.type_().clone());
    Ok(match ty {
        Some(Type::INT4) => r.try_get::<_, Option<i32>>(i)?.map(i64::from),
        Some(Type::INT2) => r.try_get::<_, Option<i16>>(i)?.map(i64::from),
        Some(Type::BOOL) => r.try_get::<_, Option<bool>>(i)?.map(i64::from),
        _ => r.try_get::<_, Option<i64>>(i)?,
    })
}

fn not_null<T>(v: Option<T>, i: usize) -> DbResult<T> {
    v.ok_or_else(|| DbError::Column(i, "unexpected NULL".into()))
}

impl Col for i64 {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> DbResult<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> DbResult<Self> {
        not_null(pg_int(r, i)?, i)
    }
}
impl Col for Option<i64> {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> DbResult<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> DbResult<Self> {
        pg_int(r, i)
    }
}
impl Col for bool {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> DbResult<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> DbResult<Self> {
        not_null(pg_int(r, i)?, i).map(|v| v != 0)
    }
}
impl Col for String {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> DbResult<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> DbResult<Self> {
        Ok(r.try_get(i)?)
    }
}
impl Col for Option<String> {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> DbResult<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> DbResult<Self> {
        Ok(r.try_get(i)?)
    }
}
impl Col for Vec<u8> {
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> DbResult<Self> {
        Ok(r.get(i)?)
    }
    fn pg(r: &postgres::Row, i: usize) -> DbResult<Self> {
        Ok(r.try_get(i)?)
    }
}
