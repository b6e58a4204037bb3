# Compiles with or without OpenMP: prange runs serially in a build without it.
cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTXENT_OPENMP 1
    #else
    #define FASTXENT_OPENMP 0
    #endif
    """
    const int FASTXENT_OPENMP
