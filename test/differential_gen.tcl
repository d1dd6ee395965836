# differential_gen.tcl -- random generation of differential.test's steps and the
# model of SQLite's transaction rules that predicts their outcomes.
# Sourced by differential.test (which says what the test does); not a test
# file of its own.

#=========================================================================
# Random generation.

proc rnd {n} { expr {int(rand() * $n)} }
proc pick {l} { lindex $l [rnd [llength $l]] }
proc chance {p} { expr {rand() < $p} }
# Weighted choice: wpick {w1 v1 w2 v2 ...}.
proc wpick {l} {
  set tot 0
  foreach {w v} $l { set tot [expr {$tot + $w}] }
  set x [expr {rand() * $tot}]
  foreach {w v} $l {
    if {$x < $w} { return $v }
    set x [expr {$x - $w}]
  }
  return [lindex $l end]
}

proc key1 {} {
  if {[chance 0.85]} {
    set n [expr {1 + [rnd 30]}]
    return [wpick [list 80 $n 8 '$n' 6 $n.0 3 "' $n'" 3 "'$n '"]]
  }
  set l {0 -1 -7 1001 1005 -5 9223372036854775807 -9223372036854775808 2.5 '1e1' 'abc' x'01'
         -0.0 1e20 NULL '' 3.0 '-3' 9223372036854775807.0 -9223372036854775808.0}
  pick $l
}
proc key2 {} {
  if {[chance 0.8]} { return "'k[expr {1 + [rnd 30]}]'" }
  pick {5 '5' 5.0 5.5 x'6b31' '' -0.0 0 NULL 'K1' "'k1 '" 1e20 -1 'k1_m' 9223372036854775807
        '05' x'' 'k2'||char(0) 12 '12' 12.0}
}
proc key {i} { key$i }
proc keys {i n} {
  set l {}
  for {set j 0} {$j < $n} {incr j} { lappend l [key $i] }
  join $l ", "
}
proc val {} {
  switch [wpick {10 null 18 int 4 bigint 10 real 18 text 8 blob 12 big}] {
    null   { return NULL }
    int    { return [expr {[rnd 101] - 50}] }
    bigint {
      set l {9223372036854775807 -9223372036854775808 9007199254740993 -4294967296 2147483648}
      return [pick $l]
    }
    real   { return [pick {2.5 -0.0 0.0 1e308 -1e-308 3.0 0.1 -2.75 1e20 9e999 -9e999 4.0}] }
    text   { return [pick {'abc' 'ABC' '' 'a'||char(0)||'b' '12' "' 12 '" '3.5' 'x' 'k5' '5' 'abd' 'q'}] }
    blob   { return [pick {x'' x'00ff' x'616263' x'00' x'6b31' x'35'}] }
    big    {
      set n [expr {500 + [rnd 2000]}]
      return [pick [list "zeroblob($n)" "printf('%.*c', $n, 'q')" "printf('%.*c', $n, 'a')"]]
    }
  }
}
# An expression over the row's own columns (UPDATE SET, INSERT ... SELECT).
proc expr_of {i} {
  set k [keycol $i]
  wpick [list 30 [val] 6 "a + 1" 4 "-a" 4 "a * 3" 3 "abs(a)" 5 v 4 $k 3 "length(v)" 3 "typeof(v)" \
    3 "CAST(a AS TEXT)" 3 "CAST(a AS REAL)" 2 "CAST(v AS BLOB)" 3 "a || ''" \
    4 "substr(coalesce(v, '') || 'x', 1, 2500)" 2 "upper(v)" 2 "CASE WHEN a > 0 THEN v ELSE a END"]
}
proc pred {i} {
  set k [keycol $i]
  switch [wpick {14 eq 12 in 14 between 10 agt 8 like 6 typeof 5 mod 4 isnull 8 gt 4 or 4 all}] {
    eq      { return "$k = [key $i]" }
    in      { return "$k IN ([keys $i [expr {1 + [rnd 5]}]])" }
    between { return "$k BETWEEN [key $i] AND [key $i]" }
    agt     { return "a > [pick [list [expr {[rnd 101] - 50}] 0 'a' 'q' x'00' 2.5]]" }
    like    { return "v LIKE '[pick {a% %b% q% k% 1% %}]'" }
    typeof  { return "typeof(a) = '[pick {integer real text blob null}]'" }
    mod     { return [expr {$i == 1 ? "$k % 3 = [rnd 3]" : "length($k) % 3 = [rnd 3]"}] }
    isnull  { return "a IS NULL" }
    gt      { return "$k [pick {> >= < <=}] [key $i]" }
    or      { return "$k = [key $i] OR $k = [key $i]" }
    all     { return "1" }
  }
}
proc where {i} { expr {[chance 0.15] ? "" : " WHERE [pred $i]"} }

# INSERT rows.
proc gen_insert {i} {
  set k [keycol $i]
  set clause [wpick {20 {} 8 {OR REPLACE} 8 {OR IGNORE} 8 {OR FAIL} 6 {OR ABORT} 6 {OR ROLLBACK} 4 REPLACE}]
  if {$clause eq "REPLACE"} {
    set head "REPLACE INTO %$i"
  } else {
    set head "[string trim "INSERT $clause"] INTO %$i"
  }
  set cols [wpick [list 80 "" 8 "($k, v)" 6 "(v, a, $k)" 3 "(a, v)" 3 "($k)"]]
  set n [wpick {50 1 20 2 15 3 15 5}]
  set rows {}
  for {set j 0} {$j < $n} {incr j} {
    if {$cols eq ""} {
      lappend rows "([key $i], [val], [val])"
    } elseif {$cols eq "($k, v)"} {
      lappend rows "([key $i], [val])"
    } elseif {$cols eq "(v, a, $k)"} {
      lappend rows "([val], [val], [key $i])"
    } elseif {$cols eq "(a, v)"} {
      lappend rows "([val], [val])"
    } else {
      lappend rows "([key $i])"
    }
  }
  if {$cols ne "" && [chance 0.1]} {
    return "$head$cols DEFAULT VALUES"
  }
  return "$head$cols VALUES [join $rows {, }]"
}
# INSERT ... SELECT, always in a defined order.
proc gen_insert_select {i} {
  set k [keycol $i]
  set clause [wpick {10 {} 8 {OR REPLACE} 8 {OR IGNORE} 8 {OR FAIL} 4 {OR ROLLBACK}}]
  set head [string trim "INSERT $clause"]
  set o [expr {3 - $i}]
  set ko [keycol $o]
  set dir [pick {"" " DESC"}]
  switch [wpick {10 self 5 other 4 values}] {
    self {
      set ke [expr {$i == 1 ? [pick {"pk + 1" "pk - 2" "pk + 1000" "-pk" "a" "pk * 2"}]
                             : [pick {"k || 'x'" "upper(k)" "v" "substr(k, 1, 2)" "k"}]}]
      return "$head INTO %$i SELECT $ke, [expr_of $i], [expr_of $i] FROM %$i[where $i] ORDER BY $k$dir"
    }
    other {
      return "$head INTO %$i SELECT [pick [list $ko a v]], [pick [list v a $ko]], [val] FROM %$o[where $o] ORDER BY $ko$dir"
    }
    values {
      set rows {}
      for {set j 0} {$j < 2 + [rnd 3]} {incr j} { lappend rows "([key $i], [val], [val])" }
      return "$head INTO %$i SELECT * FROM (VALUES [join $rows {, }])"
    }
  }
}
proc gen_update {i} {
  set k [keycol $i]
  switch [wpick {30 nonkey 20 keyone 12 shift 6 keyconst}] {
    nonkey {
      set clause [wpick {20 {} 3 {OR REPLACE} 3 {OR IGNORE} 3 {OR FAIL} 3 {OR ROLLBACK}}]
      set sets [wpick [list 4 "a = [expr_of $i]" 4 "v = [expr_of $i]" 3 "a = [expr_of $i], v = [expr_of $i]"]]
      return "[string trim "UPDATE $clause"] %$i SET $sets[where $i]"
    }
    keyone {
      set clause [wpick {10 {} 5 {OR REPLACE} 5 {OR IGNORE} 4 {OR FAIL} 2 {OR ABORT} 3 {OR ROLLBACK}}]
      set extra [expr {[chance 0.4] ? ", a = [expr_of $i]" : ""}]
      return "[string trim "UPDATE $clause"] %$i SET $k = [key $i]$extra WHERE $k = [key $i]"
    }
    shift {
      # The new keys never meet the keys being moved, and are distinct: the
      # outcome does not depend on the order of the rows (no OR FAIL).
      set clause [wpick {10 {} 5 {OR REPLACE} 5 {OR IGNORE} 2 {OR ABORT} 3 {OR ROLLBACK}}]
      set lo [expr {1 + [rnd 30]}]
      set hi [expr {$lo + [rnd 12]}]
      if {$i == 1} {
        set s [pick [list \
          "pk = pk + 1000 WHERE pk BETWEEN $lo AND $hi" \
          "pk = pk - 1000 WHERE pk BETWEEN [expr {$lo + 1000}] AND [expr {$hi + 1000}]" \
          "pk = -pk WHERE pk BETWEEN $lo AND $hi" \
          "pk = -pk WHERE pk BETWEEN -$hi AND -$lo" \
          "pk = pk + 1000, a = v WHERE pk BETWEEN $lo AND $hi AND a IS NOT NULL"]]
      } else {
        # GLOB and length() stop at a NUL: keys with one are left alone.
        set nonul "instr(CAST(k AS BLOB), x'00') = 0"
        set s [pick [list \
          "k = k || '_m' WHERE typeof(k) = 'text' AND k GLOB 'k*' AND k NOT GLOB '*_m' AND $nonul" \
          "k = substr(k, 1, length(k) - 2) WHERE typeof(k) = 'text' AND k GLOB 'k*_m' AND k NOT GLOB '*_m_m' AND $nonul" \
          "k = k + 1000 WHERE typeof(k) = 'integer' AND k BETWEEN 0 AND 30"]]
      }
      return "[string trim "UPDATE $clause"] %$i SET $s"
    }
    keyconst {
      # One new key for any number of rows: the second row always fails.
      set clause [pick {{} {OR ABORT} {OR ROLLBACK}}]
      return "[string trim "UPDATE $clause"] %$i SET $k = [key $i][where $i]"
    }
  }
}
proc gen_delete {i} {
  set k [keycol $i]
  # Mostly small deletes, so that the tables stay populated.
  switch [wpick {30 eq 14 in 14 between 8 agt 8 like 4 typeof 3 gt 2 all}] {
    eq      { return "DELETE FROM %$i WHERE $k = [key $i]" }
    in      { return "DELETE FROM %$i WHERE $k IN ([keys $i [expr {1 + [rnd 4]}]])" }
    between {
      if {$i == 1} {
        set lo [expr {[rnd 40] - 5}]
        return "DELETE FROM %1 WHERE pk BETWEEN $lo AND [expr {$lo + [rnd 4]}]"
      }
      return "DELETE FROM %2 WHERE k BETWEEN [key 2] AND [key 2]"
    }
    agt     { return "DELETE FROM %$i WHERE a > [pick {40 45 'q' 'k' x'00' 1e300}]" }
    like    { return "DELETE FROM %$i WHERE v LIKE '[pick {a% %b% k% 1% %c}]'" }
    typeof  { return "DELETE FROM %$i WHERE typeof(v) = '[pick {real text blob}]' AND $k [pick {< >}] [key $i]" }
    gt      { return "DELETE FROM %$i WHERE $k [pick {> <}] [key $i] AND a IS NULL" }
    all     { return "DELETE FROM %$i" }
  }
}

# Many rows at once (several segments of one transaction), from a
# recursive CTE (a defined order).
proc gen_bulk {i} {
  set k [keycol $i]
  set n [expr {5 + [rnd 25]}]
  set base [pick {0 1 10 1000 -20}]
  set key [expr {$i == 1 ? "x + $base" : "'k' || (x + $base)"}]
  set clause [wpick {6 {OR REPLACE} 3 {OR IGNORE} 2 {} 1 {OR FAIL}}]
  set w "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $n)"
  switch [rnd 3] {
    0 { return "$w [string trim "INSERT $clause"] INTO %$i SELECT $key, x, printf('%.*c', [expr {500 + [rnd 2000]}], char(97 + x % 26)) FROM c" }
    1 { return "UPDATE %$i SET v = printf('%.*c', [expr {500 + [rnd 2000]}], 'u'), a = length(v) WHERE $k IN ($w SELECT $key FROM c)" }
    2 { return "DELETE FROM %$i WHERE $k IN ($w SELECT $key FROM c WHERE x % [expr {2 + [rnd 3]}] = 0)" }
  }
}
proc gen_write {i} {
  switch [wpick {40 insert 12 insel 30 update 15 delete 3 bulk}] {
    bulk   { return [gen_bulk $i] }
    insert { return [gen_insert $i] }
    insel  { return [gen_insert_select $i] }
    update { return [gen_update $i] }
    delete { return [gen_delete $i] }
  }
}

# A read: {lsql nsql mode}.
proc gen_read {i} {
  set k [keycol $i]
  set o [expr {3 - $i}]
  set cols "$k, quote(a), quote(v)"
  switch [wpick {12 eq 4 eqraw 10 in 4 inu 4 insub 10 full 6 fullu 8 agg 6 group 10 token 8 join 3 range 2 exists}] {
    eq    { set s "SELECT $cols FROM %$i WHERE $k = [key $i]"; return [list $s $s o] }
    eqraw { set s "SELECT * FROM %$i WHERE $k = [key $i]"; return [list $s $s o] }
    in    { set s "SELECT $cols FROM %$i WHERE $k IN ([keys $i [rnd 7]]) ORDER BY $k"; return [list $s $s o] }
    inu   { set s "SELECT $cols FROM %$i WHERE $k IN ([keys $i [expr {1 + [rnd 6]}]])"; return [list $s $s {u 3}] }
    insub {
      # Pair 2: not from its INT column a (documented difference).
      set c [expr {$i == 1 ? [pick {a v}] : "v"}]
      set s "SELECT $k, quote(a) FROM %$i WHERE $k IN (SELECT $c FROM %$i[where $i]) ORDER BY $k"
      return [list $s $s o]
    }
    full  { set s "SELECT $cols, typeof(a), typeof(v) FROM %$i[where $i] ORDER BY $k"; return [list $s $s o] }
    fullu { set s "SELECT * FROM %$i[where $i]"; return [list $s $s {u 3}] }
    agg {
      set s [pick [list \
        "SELECT count(*), count(a), count(v), count(DISTINCT typeof(v)) FROM %$i[where $i]" \
        "SELECT sum(a), total(a), min(a), max(a), min(v), max(v) FROM (SELECT a, v FROM %$i[where $i] ORDER BY $k)" \
        "SELECT group_concat(quote($k)), group_concat(length(v)), avg(a) FROM (SELECT * FROM %$i[where $i] ORDER BY $k)" \
        "SELECT max($k), min($k), count(*) FROM %$i" \
        "SELECT sum(length(v)), sum(a) FROM (SELECT a, v FROM %$i ORDER BY $k)"]]
      return [list $s $s o]
    }
    group {
      set s "SELECT typeof(a), count(*), group_concat(quote($k)) FROM (SELECT * FROM %$i ORDER BY $k) GROUP BY 1 ORDER BY 1"
      return [list $s $s o]
    }
    token {
      set x [expr {entier((rand() * 2.0 - 1.0) * 9.2e18)}]
      set y [expr {entier((rand() * 2.0 - 1.0) * 9.2e18)}]
      if {$x > $y} { lassign [list $y $x] x y }
      # The hidden column has NUMERIC affinity (its declared type is
      # "HIDDEN"); CAST(... AS NUMERIC) gives the native expression the same.
      set t "CAST(logstor_token($k) AS NUMERIC)"
      # Bounds: random, exactly a key's token, or of another type; text that
      # looks like a number compares as the number.
      if {[chance 0.1]} {
        set x [pick [list '$x' "' $x '" '$x.5' "'[expr {double($x)}]'" "CAST(logstor_token([key $i]) AS TEXT)"]]
      } elseif {[chance 0.3]} {
        set x "logstor_token([key $i])"
      }
      if {[chance 0.1]} {
        set y [pick [list '$y' '$y.0' "CAST(logstor_token([key $i]) AS TEXT)"]]
      } elseif {[chance 0.2]} {
        set y "logstor_token([key $i])"
      }
      if {[chance 0.05]} { set x [pick {'abc' NULL 1e19 -1e19 x'00' 0.5 -0.5 '' '0x10' {' 1e3'}}] }
      switch [rnd 9] {
        0 { return [list "SELECT $k, quote(v) FROM %$i WHERE token >= $x AND token < $y" \
                         "SELECT $k, quote(v) FROM %$i WHERE $t >= $x AND $t < $y ORDER BY $t" o] }
        1 { return [list "SELECT token, $k FROM %$i WHERE token > $x" \
                         "SELECT $t, $k FROM %$i WHERE $t > $x ORDER BY $t" o] }
        2 { return [list "SELECT count(*), sum(length(v)) FROM %$i WHERE token <= $y" \
                         "SELECT count(*), sum(length(v)) FROM %$i WHERE $t <= $y" o] }
        3 { set kk [key $i]
            return [list "SELECT $k, quote(a) FROM %$i WHERE token = logstor_token($kk)" \
                         "SELECT $k, quote(a) FROM %$i WHERE $t = logstor_token($kk)" o] }
        4 { return [list "SELECT $k, token FROM %$i ORDER BY token" \
                         "SELECT $k, $t FROM %$i ORDER BY $t" o] }
        5 { return [list "SELECT token, $k FROM %$i WHERE token < $y AND a IS NOT NULL" \
                         "SELECT $t, $k FROM %$i WHERE $t < $y AND a IS NOT NULL ORDER BY $t" o] }
        6 { set lim "LIMIT [rnd 5] OFFSET [rnd 3]"
            set op [pick {> >= < <=}]
            return [list "SELECT $k, quote(a) FROM %$i WHERE token $op $x ORDER BY token $lim" \
                         "SELECT $k, quote(a) FROM %$i WHERE $t $op $x ORDER BY $t $lim" o] }
        7 { return [list "SELECT $k FROM %$i WHERE token BETWEEN $x AND $y ORDER BY token DESC" \
                         "SELECT $k FROM %$i WHERE $t BETWEEN $x AND $y ORDER BY $t DESC" o] }
        8 { return [list "SELECT $k FROM %$i WHERE token >= $x AND token >= $y AND token IS NOT NULL" \
                         "SELECT $k FROM %$i WHERE $t >= $x AND $t >= $y ORDER BY $t" o] }
      }
    }
    join {
      # Into pair 2 (TEXT / untyped key) only from untyped columns: the
      # planner may run a join either way round, so no join compares k with
      # an INTEGER column (pk, or pair 2's a) at all.
      if {$i == 1} {
        set s [pick {
          "SELECT x.pk, y.pk, quote(y.v) FROM %1 x JOIN %1 y ON y.pk = x.a ORDER BY 1, 2"
          "SELECT x.pk, y.pk FROM %1 x LEFT JOIN %1 y ON y.pk = x.pk + 1 ORDER BY 1, 2"
          "SELECT x.pk, y.k FROM %1 x JOIN %2 y ON y.k = x.v ORDER BY 1, 2"
          "SELECT x.pk, count(y.pk) FROM %1 x JOIN %1 y ON y.a = x.a GROUP BY x.pk ORDER BY 1"
          "SELECT x.k, y.pk, quote(y.a) FROM %2 x JOIN %1 y ON y.pk = x.v ORDER BY 1, 2"
        }]
      } else {
        set s [pick {
          "SELECT x.k, y.k FROM %2 x JOIN %2 y ON y.k = x.v ORDER BY 1, 2"
          "SELECT x.k, y.k FROM %2 x LEFT JOIN %2 y ON y.k = x.k || '_m' ORDER BY 1, 2"
          "SELECT x.k, y.pk FROM %2 x JOIN %1 y ON y.pk = x.a ORDER BY 1, 2"
          "SELECT x.k, y.k FROM %1 z JOIN %2 x ON x.k = z.v JOIN %2 y ON y.k = x.v ORDER BY 1, 2"
        }]
      }
      return [list $s $s o]
    }
    range { set s "SELECT $k FROM %$i WHERE $k [pick {> < >= <=}] [key $i] ORDER BY $k"; return [list $s $s o] }
    exists { set s "SELECT EXISTS(SELECT 1 FROM %$i WHERE $k = [key $i]), (SELECT quote(v) FROM %$i WHERE $k = [key $i])"
             return [list $s $s o] }
  }
}

# The twin step of a template: %1 and %2 become the tables' current names
# as the connection sees them (names: dict i -> state; absent tables keep
# their base name, so the statement fails the same way on both).
proc twin {conn names tmpl mode {ntmpl ""}} {
  if {$ntmpl eq ""} { set ntmpl $tmpl }
  set lm {}
  set nm {}
  foreach i {1 2} {
    set st [dict get $names $i]
    lappend lm %$i [lname $i $st] 
    lappend nm %$i [nname $i $st]
  }
  set lsql [string map $lm $tmpl]
  set nsql [string map $nm $ntmpl]
  # OR ROLLBACK: when the logstor statement fails, SQLite rolls back the
  # whole transaction, native tables included, so the native twin would
  # then run on another state.  The native twin runs first, as OR ABORT
  # (the same outcome for the statement itself); a failing logstor
  # statement then rolls back both.
  if {$mode eq "w" && [string match "*OR ROLLBACK*" $lsql]} {
    set nsql [string map {"OR ROLLBACK" "OR ABORT"} $nsql]
    set mode wr
  }
  list P $conn $lsql $nsql $mode
}

#-------------------------------------------------------------------------
# The model of SQLite's transaction rules, for the connection db.
#   M(txn)    0: autocommit; begin: BEGIN; sp: started by SAVEPOINT
#   M(stack)  savepoints, innermost last: {name names-at-savepoint}
#   M(names)  dict pair -> name state, as db sees it
#   M(tnames) the names when the transaction began
#   M(cnames) committed names
#   M(wrote)  db's transaction may hold SQLite's write lock
#   M(stale)  db2 committed since db's transaction read: db only reads
proc model_init {} {
  array set ::M {txn 0 stack {} wrote 0 stale 0}
  set ::pending {}
  set ::pending_ddl {}
  set ::M(names) {1 b 2 b}
  set ::M(tnames) $::M(names)
  set ::M(cnames) $::M(names)
}
proc sp_find {name} {
  for {set j [expr {[llength $::M(stack)] - 1}]} {$j >= 0} {incr j -1} {
    if {[string equal -nocase [lindex $::M(stack) $j 0] $name]} { return $j }
  }
  return -1
}
# Predict a transaction statement: returns {expect-error action} where
# action is applied if the outcome is as expected.
proc model_predict {sql} {
  set w [string toupper $sql]
  if {[regexp {^BEGIN} $w]} {
    if {$::M(txn) ne "0"} { return {1 {}} }
    return {0 {set ::M(txn) begin; set ::M(stack) {}; set ::M(tnames) $::M(names)}}
  }
  if {[regexp {^(COMMIT|END)} $w]} {
    if {$::M(txn) eq "0"} { return {1 {}} }
    return {0 {set ::M(txn) 0; set ::M(stack) {}; set ::M(cnames) $::M(names)}}
  }
  if {[regexp {^ROLLBACK( TRANSACTION)?( TO (SAVEPOINT )?(\S+))?$} $w -> - to - name]} {
    if {$to eq ""} {
      if {$::M(txn) eq "0"} { return {1 {}} }
      return {0 {set ::M(txn) 0; set ::M(stack) {}; set ::M(names) $::M(tnames)}}
    }
    set j [sp_find $name]
    if {$j < 0} { return {1 {}} }
    return [list 0 "set ::M(names) \[lindex \$::M(stack) $j 1\]; set ::M(stack) \[lrange \$::M(stack) 0 $j\]"]
  }
  if {[regexp {^RELEASE (SAVEPOINT )?(\S+)$} $w -> - name]} {
    set j [sp_find $name]
    if {$j < 0} { return {1 {}} }
    if {$j == 0 && $::M(txn) eq "sp"} {
      return {0 {set ::M(txn) 0; set ::M(stack) {}; set ::M(cnames) $::M(names)}}
    }
    return [list 0 "set ::M(stack) \[lrange \$::M(stack) 0 [expr {$j - 1}]\]"]
  }
  if {[regexp {^SAVEPOINT (\S+)$} $w -> name]} {
    set a "lappend ::M(stack) \[list $name \$::M(names)\]"
    if {$::M(txn) eq "0"} { set a "set ::M(txn) sp; set ::M(tnames) \$::M(names); $a" }
    return [list 0 $a]
  }
  error "model: $sql"
}

proc gen_txn {} {
  set sp $::P(sp)
  set depth [llength $::M(stack)]
  if {$::M(txn) eq "0"} {
    set sql [wpick [list 40 BEGIN 8 "BEGIN IMMEDIATE" 4 "BEGIN DEFERRED" 4 "BEGIN EXCLUSIVE" \
                      [expr {$sp ? 40 : 0}] "SAVEPOINT s[rnd 4]" 2 COMMIT 2 ROLLBACK \
                      [expr {$sp ? 2 : 0}] "RELEASE s1"]]
  } else {
    set names [lmap e $::M(stack) {lindex $e 0}]
    set l [list 20 COMMIT 4 END 3 "COMMIT TRANSACTION" 16 ROLLBACK 2 "ROLLBACK TRANSACTION" 2 BEGIN]
    if {$sp} {
      lappend l [expr {$depth < 4 ? 30 : 5}] "SAVEPOINT s[rnd 4]"
      if {$depth} {
        lappend l 18 "RELEASE [pick $names]" 4 "RELEASE SAVEPOINT [pick $names]"
        set to $names
        if {[llength $to]} {
          lappend l 18 "ROLLBACK TO [pick $to]" 4 "ROLLBACK TO SAVEPOINT [pick $to]"
        }
      }
      lappend l 2 "RELEASE nosuch" 2 "ROLLBACK TO nosuch"
    }
    set sql [wpick $l]
  }
  lassign [model_predict $sql] expect action
  set ::pending $action
  list B db $sql $expect
}

proc gen_ddl {} {
  set i [expr {1 + [rnd 2]}]
  set st [dict get $::M(names) $i]
  set other [expr {$st eq "r" ? "b" : "r"}]
  if {$st eq ""} {
    if {[chance 0.9]} {
      lassign [create_sql $i [pick {b b r}]] lc nc
      set ::pending_ddl [list $i create]
      return [list P db $lc $nc w]
    }
    set ::pending_ddl {}
    return [twin db $::M(names) [pick [list "DROP TABLE %$i" "DROP TABLE IF EXISTS %$i" "ALTER TABLE %$i RENAME TO x$i"]] w]
  }
  set what [wpick {10 drop 10 rename 2 dupcreate 2 renamebad}]
  switch $what {
    drop {
      set ::pending_ddl [list $i drop]
      return [twin db $::M(names) [pick [list "DROP TABLE %$i" "DROP TABLE IF EXISTS %$i"]] w]
    }
    rename {
      set ::pending_ddl [list $i rename $other]
      return [list P db "ALTER TABLE [lname $i $st] RENAME TO [lname $i $other]" \
                        "ALTER TABLE [nname $i $st] RENAME TO [nname $i $other]" w]
    }
    dupcreate {
      set ::pending_ddl {}
      lassign [create_sql $i $st] lc nc
      return [list P db $lc $nc w]
    }
    renamebad {
      # Onto the name of the other pair's table, which exists: fails.
      set ::pending_ddl {}
      set j [expr {3 - $i}]
      set sj [dict get $::M(names) $j]
      if {$sj eq ""} { return [twin db $::M(names) "DROP TABLE IF EXISTS nosuch" w] }
      return [list P db "ALTER TABLE [lname $i $st] RENAME TO [lname $j $sj]" \
                        "ALTER TABLE [nname $i $st] RENAME TO [nname $j $sj]" w]
    }
  }
}

# Apply a DDL step whose native form succeeded.
proc model_ddl {d} {
  if {$d eq ""} return
  lassign $d i what to
  switch $what {
    create { dict set ::M(names) $i [expr {[string match *_r* [lindex $::curstep 3]] ? "r" : "b"}] }
    drop   { dict set ::M(names) $i "" }
    rename { dict set ::M(names) $i $to }
  }
  if {$::M(txn) eq "0"} { set ::M(cnames) $::M(names) }
}

# The first pair that exists, or "".
proc live_pair {names} {
  dict for {i st} $names { if {$st ne ""} { return $i } }
  return ""
}
# Pick a pair that exists (or any, rarely).
proc pick_pair {names} {
  set live {}
  dict for {i st} $names { if {$st ne ""} { lappend live $i } }
  if {![llength $live] || [chance 0.03]} { return [expr {1 + [rnd 2]}] }
  pick $live
}

# Profiles: weights of the actions.
proc profile {name} {
  array unset ::P
  array set ::P {sp 0 ddl 0 two 0}
  set w {write 45 read 28 txn 14 reopen 1.5 maint 1.5 db2read 0 db2write 0 db2snap 0 ddl 0}
  switch $name {
    conflict  { }
    savepoint { set ::P(sp) 1; dict set w txn 28 }
    ddl       { set ::P(sp) 1; set ::P(ddl) 1; dict set w txn 22; dict set w ddl 9 }
    twoconn   { set ::P(sp) 1; set ::P(two) 1; dict set w db2read 18; dict set w db2write 9; dict set w db2snap 4 }
    mixed     { set ::P(sp) 1; set ::P(ddl) 1; set ::P(two) 1
                dict set w txn 20; dict set w ddl 5; dict set w db2read 10; dict set w db2write 6
                dict set w db2snap 2 }
    default   { error "unknown profile $name" }
  }
  set ::P(w) {}
  dict for {k v} $w { lappend ::P(w) $v $k }
}

# Next action: a list of steps.
proc gen_action {} {
  set ::pending {}
  set ::pending_ddl {}
  set a [wpick $::P(w)]
  if {$a eq "reopen" && $::M(txn) ne "0"} { set a write }
  # db2 commits during db's transaction only when that transaction does
  # not hold the write lock; db's transaction first reads a table of each
  # kind (both snapshots start), then reads that state until it ends (a
  # write would fail on a native table with SQLITE_BUSY_SNAPSHOT; see
  # "deliberately not generated").  db2's read transaction (db2snap) needs
  # db in autocommit mode.
  if {$a eq "db2write" && $::M(txn) ne "0" && ($::M(wrote) || [live_pair $::M(names)] eq "")} { set a write }
  if {$a eq "db2snap" && $::M(txn) ne "0"} { set a read }
  if {$::M(stale) && $a in {write ddl}} { set a read }
  # A missing table is usually created again soon.
  if {$::P(ddl) && [lsearch [dict values $::M(names)] ""] >= 0 && [chance 0.3]} { set a ddl }
  switch $a {
    write {
      set i [pick_pair $::M(names)]
      return [list [twin db $::M(names) [gen_write $i] w]]
    }
    read {
      lassign [gen_read [pick_pair $::M(names)]] l n mode
      return [list [twin db $::M(names) $l $mode $n]]
    }
    txn    { return [list [gen_txn]] }
    ddl    { return [list [gen_ddl]] }
    reopen { return {R {F dbc}} }
    maint  {
      # Also inside transactions: the names as db sees them.
      set i [pick_pair $::M(names)]
      set t [lname $i [dict get $::M(names) $i]]
      if {[dict get $::M(names) $i] eq ""} { return {} }
      return [list [wpick [list 3 [list X db "SELECT logstor_compact('$t')"] 2 [list X db "SELECT logstor_flush('$t')"] \
                                4 [list E db "SELECT logstor_check('$t')" ok]]]]
    }
    db2read {
      lassign [gen_read [pick_pair $::M(cnames)]] l n mode
      return [list [twin db2 $::M(cnames) $l $mode $n]]
    }
    db2snap {
      # db2 reads in a transaction while db commits writes: both tables
      # keep showing db2 the state of its first read.
      set i [live_pair $::M(cnames)]
      if {$i eq ""} { return {} }
      set steps [list [list B db2 [pick {BEGIN {BEGIN DEFERRED} {SAVEPOINT r}}] 0] \
                  [twin db2 $::M(cnames) "SELECT count(*), sum(length(v)) FROM %$i" o]]
      for {set j [rnd 3]} {$j < 2} {incr j} {
        lassign [gen_read [pick_pair $::M(cnames)]] l nn mode
        lappend steps [twin db2 $::M(cnames) $l $mode $nn]
      }
      for {set j [wpick {3 1 2 2 1 3}]} {$j > 0} {incr j -1} {
        lappend steps [twin db $::M(names) [gen_write [pick_pair $::M(names)]] w]
        if {[chance 0.5]} {
          lassign [gen_read [pick_pair $::M(cnames)]] l nn mode
          lappend steps [twin db2 $::M(cnames) $l $mode $nn]
        }
      }
      set end [expr {[string match SAVEPOINT* [lindex $steps 0 2]] ? {{RELEASE r} ROLLBACK} : {COMMIT ROLLBACK END}}]
      lappend steps [list B db2 [pick $end] 0]
      return $steps
    }
    db2write {
      set steps {}
      if {$::M(txn) ne "0"} {
        # The snapshots of db's transaction start (a statement such as
        # LIMIT 0 reads no logstor table: see "deliberately not generated").
        set ::M(stale) 1
        lappend steps [twin db $::M(names) "SELECT count(*), sum(a = 1) FROM %[live_pair $::M(names)]" o]
      }
      set n [wpick {3 1 2 2 1 3}]
      set txn [expr {$n > 1 || [chance 0.2]}]
      if {$txn} { lappend steps [list B db2 [pick {BEGIN BEGIN {BEGIN IMMEDIATE} {SAVEPOINT w}}] 0] }
      for {set j 0} {$j < $n} {incr j} {
        set i [pick_pair $::M(cnames)]
        set sql [gen_write $i]
        # A failing OR ROLLBACK would end db2's transaction early.
        if {$txn} { regsub {OR ROLLBACK} $sql {OR ABORT} sql }
        lappend steps [twin db2 $::M(cnames) $sql w]
        if {$txn && [chance 0.3]} {
          lassign [gen_read [pick_pair $::M(cnames)]] l nn mode
          lappend steps [twin db2 $::M(cnames) $l $mode $nn]
        }
      }
      if {$txn} { lappend steps [list B db2 [pick {COMMIT COMMIT END}] 0] }
      lappend steps {F dbc}
      return $steps
    }
  }
}

# After a step executed as expected: update the model.
proc model_after {step} {
  switch -- [lindex $step 0] {
    B {
      if {[lindex $step 1] eq "db"} {
        eval $::pending
        if {[regexp -nocase {^BEGIN (IMMEDIATE|EXCLUSIVE)} [lindex $step 2]]} { set ::M(wrote) 1 }
      }
    }
    P {
      if {[lindex $step 1] ne "db"} return
      lassign $::last rl rn
      if {$::M(txn) ne "0" && [lindex $step 4] in {w wr}} { set ::M(wrote) 1 }
      if {$::pending_ddl ne "" && ![lindex $rn 0]} {
        model_ddl $::pending_ddl
      }
      # A conflict under OR ROLLBACK ends the transaction.
      if {$::M(txn) ne "0" && [string match "*OR ROLLBACK*" [lindex $step 2]] &&
          (([lindex $rl 0] && [lindex $rl 2] == 19) || ([lindex $rn 0] && [lindex $rn 2] == 19))} {
        set ::M(txn) 0
        set ::M(stack) {}
        set ::M(names) $::M(tnames)
      }
    }
  }
  if {$::M(txn) eq "0"} { array set ::M {wrote 0 stale 0} }
}
