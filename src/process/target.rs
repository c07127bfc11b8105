//! What a child runs: a [`Target`] (a `fn`, or a closure that captures
//! nothing) called with its arguments, and what its return value means as an
//! exit code ([`Exit`]).

/// A function a child process can run with `Args` (a tuple of its
/// parameters). Implemented for every `Fn` of up to six parameters that is
/// `Copy + Send + 'static`; [`Process::new`](crate::Process::new)
/// additionally requires it to be zero-sized (a `fn` item or a closure that
/// captures nothing) so that a spawned child can name it by address.
pub trait Target<Args>: Copy + Send + 'static {
    /// Calls the function; its exit code.
    fn call(self, args: Args) -> i32;
}

macro_rules! impl_target {
    ($($arg:ident),*) => {
        impl<Func, Ret, $($arg),*> Target<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Ret + Copy + Send + 'static,
            Ret: Exit,
        {
            #[allow(non_snake_case)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> i32 {
                self($($arg),*).exit_code()
            }
        }
    };
}

impl_target!();
impl_target!(A);
impl_target!(A, B);
impl_target!(A, B, C);
impl_target!(A, B, C, D);
impl_target!(A, B, C, D, E);
impl_target!(A, B, C, D, E, F);

/// What a target's return value means as the child's exit code.
pub trait Exit {
    /// The exit code the child ends with.
    fn exit_code(self) -> i32;
}

impl Exit for () {
    fn exit_code(self) -> i32 {
        0
    }
}

impl Exit for i32 {
    fn exit_code(self) -> i32 {
        self
    }
}

/// `Err` prints the error on stderr and exits with 1, as a `main` would.
impl<E: std::fmt::Debug> Exit for Result<(), E> {
    fn exit_code(self) -> i32 {
        match self {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("Error: {e:?}");
                1
            }
        }
    }
}
