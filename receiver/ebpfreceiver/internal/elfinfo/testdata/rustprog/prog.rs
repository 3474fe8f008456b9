// prog is a test fixture for the elfinfo package: the tests build it with
// rustc -g -C opt-level=1 (when rustc is installed) and inspect it; they never
// run it.
use std::hint::black_box;

pub struct Pair {
    a: u32,
    b: u32,
}

pub struct Big {
    a: u64,
    b: u64,
    c: u64,
}

pub struct Mixed {
    x: f64,
    y: u64,
}

// on=RDI level=RSI id=RDX delta=RCX
#[inline(never)]
pub fn flags(on: bool, level: u8, id: u64, delta: i16) -> u64 {
    if on { id + level as u64 } else { delta as u64 }
}

// p: a scalar pair in RDI, RSI; n=RDX
#[inline(never)]
pub fn with_pair(p: Pair, n: u64) -> u64 {
    (p.a + p.b) as u64 + n
}

// b: more than 16 bytes, passed by reference in RDI; n=RSI
#[inline(never)]
pub fn with_big(b: Big, n: u64) -> u64 {
    b.a + b.b + b.c + n
}

// m: XMM0 + RDI; n=RSI
#[inline(never)]
pub fn with_mixed(m: Mixed, n: u64) -> u64 {
    m.x as u64 + m.y + n
}

// hidden result pointer=RDI x=RSI y=RDX
#[inline(never)]
pub fn make_big(x: u64, y: u32) -> Big {
    Big { a: x, b: y as u64, c: x * 2 }
}

// t=RDI,RSI, the unit value takes nothing, n=RDX
#[inline(never)]
pub fn tuple(t: (u32, u32), z: (), n: u64) -> u64 {
    black_box(z);
    t.0 as u64 + t.1 as u64 + n
}

// Only name.len() is used: LLVM drops the pointer half of name from this
// internal function's signature, so count arrives in RSI, not RDX.
#[inline(never)]
pub fn process(name: &str, count: i32, big: i64) -> usize {
    name.len() + count as usize + big as usize
}

fn main() {
    let s = String::from("hello");
    println!("{}", flags(black_box(true), black_box(1), black_box(2), black_box(-3)));
    println!("{}", with_pair(black_box(Pair { a: 1, b: 2 }), black_box(3)));
    println!("{}", with_big(black_box(Big { a: 1, b: 2, c: 3 }), black_box(3)));
    println!("{}", with_mixed(black_box(Mixed { x: 1.0, y: 2 }), black_box(3)));
    println!("{}", make_big(black_box(1), black_box(2)).c);
    println!("{}", tuple(black_box((1, 2)), (), black_box(3)));
    println!("{}", process(black_box(&s), black_box(2), black_box(3)));
}
