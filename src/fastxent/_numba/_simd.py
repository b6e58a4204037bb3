"""What the tile kernels need and Numba cannot express: scratch arrays on the
stack, and an 8 x 8 float32 transpose in vector registers (the ``__m256``
code of ``fx_transpose_in_f32`` in ``_cython/_sweeps.h``).

Scratch on the stack matters for speed, not only for allocation: LLVM knows
that stack arrays overlap nothing else, and vectorises the loops over a
tile's rows; with heap arrays it must assume that they might overlap, and
leaves those loops scalar.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def stack_empty(size):
    """An intrinsic ``empty(dtype)``: a pointer to ``size`` uninitialised
    elements of dtype on the stack of the calling function (``numba.carray``
    makes it an array). Valid until that function returns: call it only in
    the function that uses the array, and inline the ones it passes it to."""
    @intrinsic
    def empty(typingctx, dtype):
        if not isinstance(dtype, types.DType):
            return None
        element = dtype.dtype

        def codegen(context, builder, signature, args):
            t = context.get_data_type(element)
            buffer = cgutils.alloca_once(builder, ir.ArrayType(t, size))
            buffer.align = 64
            return builder.bitcast(buffer, t.as_pointer())

        return types.CPointer(element)(dtype), codegen
    return empty


def _mask(*lanes):
    i32 = ir.IntType(32)
    return ir.Constant(ir.VectorType(i32, 8), [ir.Constant(i32, i) for i in lanes])


# The shuffles of the AVX2 transpose: unpacklo/hi, shuffle_ps 0x44/0xEE and
# permute2f128 0x20/0x31, as lane masks.
_UNPACK = _mask(0, 8, 1, 9, 4, 12, 5, 13), _mask(2, 10, 3, 11, 6, 14, 7, 15)
_PAIRS = _mask(0, 1, 8, 9, 4, 5, 12, 13), _mask(2, 3, 10, 11, 6, 7, 14, 15)
_HALVES = _mask(0, 1, 2, 3, 8, 9, 10, 11), _mask(4, 5, 6, 7, 12, 13, 14, 15)


def _transpose8(builder, r):
    """The 8 columns of the 8 rows r (vectors of 8)."""
    t = [builder.shuffle_vector(r[2 * k], r[2 * k + 1], m) for k in range(4) for m in _UNPACK]
    u = [builder.shuffle_vector(t[a], t[a + 2], m) for a in (0, 1, 4, 5) for m in _PAIRS]
    return [builder.shuffle_vector(u[k], u[k + 4], h) for h in _HALVES for k in range(4)]


def _f32_vector(a):
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1 \
        and a.layout == "C"


@intrinsic
def transpose8_max(typingctx, z, zo, rs, zt, zto, zts, m, mo):
    """zt[zto + j * zts + i] = z[zo + i * rs + j] for i, j < 8, and
    m[mo + i] = the max of m[mo + i] and those 8 values, skipping NaN as
    ``x > m ? x : m`` does. float32, C-contiguous 1-d arrays; no bounds
    checks: the caller keeps every index in range."""
    if not (_f32_vector(z) and _f32_vector(zt) and _f32_vector(m)):
        return None
    index = types.intp

    def codegen(context, builder, signature, args):
        z_, zo_, rs_, zt_, zto_, zts_, m_, mo_ = [
            context.cast(builder, a, t, index) if isinstance(t, types.Integer) else a
            for a, t in zip(args, signature.args)]
        vector = ir.VectorType(ir.FloatType(), 8)

        def at(array, type_, offset):
            data = context.make_array(type_)(context, builder, array).data
            return builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())

        def i(k):
            return ir.Constant(rs_.type, k)

        rows = [builder.load(at(z_, signature.args[0], builder.add(zo_, builder.mul(rs_, i(k)))),
                             align=4) for k in range(8)]
        columns = _transpose8(builder, rows)
        mp = at(m_, signature.args[6], mo_)
        mx = builder.load(mp, align=4)
        for k, column in enumerate(columns):
            builder.store(column, at(zt_, signature.args[3],
                                     builder.add(zto_, builder.mul(zts_, i(k)))), align=4)
            mx = builder.select(builder.fcmp_ordered(">", column, mx), column, mx)
        builder.store(mx, mp, align=4)
        return context.get_dummy_value()

    return types.none(z, zo, rs, zt, zto, zts, m, mo), codegen
