// A second translation unit including the wrapper: it must link with the first (every
// function in the header is inline).
#include "o365_essentials.hpp"

std::string operation_table() { return o365::integration::operations(); }
